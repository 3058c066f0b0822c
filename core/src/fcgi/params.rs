//! Name-value pairs (§3.4): the content of `PARAMS`, `GET_VALUES` and `GET_VALUES_RESULT`.
//!
//! ```text
//!   nameLength valueLength name value      each length: 0xxxxxxx             (0…127)
//!                                                   or 1xxxxxxx x8 x8 x8  (31 bits, BE)
//! ```
//!
//! The encoder uses the short form whenever it fits; the decoder also takes the long form
//! for short lengths, which the specification does not forbid.

use bytes::{BufMut, Bytes, BytesMut};

use super::{FcgiError, PARAM_LEN_MAX};

/// Appends the name-value encoding of `pairs` to `out` (the content only; put it in records
/// with [`encode_stream`](super::encode_stream)).
///
/// # Panics
///
/// If a name or value is longer than [`PARAM_LEN_MAX`] (2³¹ − 1 bytes), which no length can
/// say.
pub fn encode_params<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut BytesMut,
) {
    // BytesMut grows as the pairs are put (each put reserves what it needs).
    for (name, value) in pairs {
        put_len(name.len(), out);
        put_len(value.len(), out);
        out.put_slice(name);
        out.put_slice(value);
    }
}

fn put_len(len: usize, out: &mut BytesMut) {
    assert!(
        len <= PARAM_LEN_MAX,
        "a FastCGI name or value holds at most {PARAM_LEN_MAX} bytes, not {len}"
    );
    if len < 0x80 {
        // unwrap-free: len < 128.
        out.put_u8(len as u8);
    } else {
        // unwrap-free: len <= 2^31 - 1 fits a u32.
        out.put_u32(len as u32 | 0x8000_0000);
    }
}

/// Decodes a whole sequence of name-value pairs; names and values share `data`'s storage.
///
/// An error if the data ends inside a pair. Names are not checked for emptiness or
/// duplicates: what a parameter may be is the caller's decision.
pub fn decode_params(data: &Bytes) -> Result<Vec<(Bytes, Bytes)>, FcgiError> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let cut = FcgiError::ParamsCut { at };
        let mut pos = at;
        let name_len = get_len(data, &mut pos).ok_or(cut)?;
        let value_len = get_len(data, &mut pos).ok_or(cut)?;
        let name_end = pos.checked_add(name_len).ok_or(cut)?;
        let value_end = name_end.checked_add(value_len).ok_or(cut)?;
        if value_end > data.len() {
            return Err(cut);
        }
        pairs.push((data.slice(pos..name_end), data.slice(name_end..value_end)));
        at = value_end;
    }
    Ok(pairs)
}

/// Reads one length at `*pos`, moving past it; `None` if the data ends inside it.
fn get_len(data: &[u8], pos: &mut usize) -> Option<usize> {
    let first = *data.get(*pos)?;
    if first < 0x80 {
        *pos += 1;
        return Some(usize::from(first));
    }
    let bytes: [u8; 4] = data.get(*pos..*pos + 4)?.try_into().ok()?;
    *pos += 4;
    // unwrap-free: 31 bits fit a usize on every platform weir builds for (32 and 64 bits).
    Some((u32::from_be_bytes(bytes) & 0x7fff_ffff) as usize)
}
