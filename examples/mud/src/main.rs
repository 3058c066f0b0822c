//! The `weir-mud` binary: the MUD service, as weir's launcher starts it (a listening Unix
//! socket on fd 0). Everything is in the library.

fn main() {
    std::process::exit(weir_mud::main_with_listener_on_fd0());
}
