//! Writes the corpus into `fuzz/corpus/fingerprint/` when asked
//! (`PORTCULLIS_WRITE_FUZZ_SEEDS=1 cargo test -p portcullis-fingerprint --test seeds`),
//! so the fuzz seeds are the same messages the tests use.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod corpus;

#[test]
fn write_fuzz_seeds() {
    if std::env::var_os("PORTCULLIS_WRITE_FUZZ_SEEDS").is_none() {
        println!("skipping: PORTCULLIS_WRITE_FUZZ_SEEDS not set");
        return;
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/fingerprint");
    std::fs::create_dir_all(&dir).unwrap();
    let date = "30 April 2026";
    let mut seeds = vec![
        ("plain", corpus::plain("Ann", "a81f29c3d0e4", date)),
        ("html", corpus::html("Ann", "a81f29c3d0e4", date)),
        ("qp", corpus::encoded("Ann", "a1", date, "quoted-printable")),
        ("base64", corpus::encoded("Ann", "a1", date, "base64")),
        (
            "latin1",
            corpus::latin1_message("Très chère Zoë", "iso-8859-1"),
        ),
        (
            "multipart",
            corpus::multipart("Ann", "a1", date, &corpus::attachment_bytes()[..600], 76),
        ),
    ];
    for (i, m) in corpus::malformed().into_iter().enumerate() {
        if !m.is_empty() {
            seeds.push((["malformed-", &i.to_string()].concat().leak(), m));
        }
    }
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
