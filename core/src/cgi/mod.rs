//! CGI/1.1 (RFC 3875): what a script is given and what its output means.
//!
//! Two pure halves, used by the server's gateway (`server::gateway`), which runs the
//! processes through effects:
//!
//! * `env` builds the meta-variables from the request, the route and the connection;
//! * `output` parses the script's response header section as it streams in and decides
//!   what the client gets (a document, a local redirect, a client redirect, or 502).

pub mod env;
pub mod output;
