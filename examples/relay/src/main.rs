//! Reference relay (coming: see issue #10).

fn main() {
    eprintln!("portcullis-relay: not built yet, see issue #10");
    std::process::exit(2);
}
