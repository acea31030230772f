//! Print the argon2id PHC string for a password read from standard input,
//! for the `password_hash` key of an account file or
//! `PgDirectory::put_user`:
//!
//! ```text
//! printf '%s' 'correct horse' | cargo run -p portcullis-accounts --example hash-password
//! ```
//!
//! One trailing newline is stripped, so `echo` works too.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut password) {
        eprintln!("hash-password: reading standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = password
        .strip_suffix("\r\n")
        .or_else(|| password.strip_suffix('\n'))
        .unwrap_or(&password);
    if password.is_empty() {
        eprintln!("hash-password: empty password on standard input");
        return ExitCode::FAILURE;
    }
    match portcullis_accounts::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}
