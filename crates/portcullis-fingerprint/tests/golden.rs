//! Checksums and fuzzy signatures pinned to the values the fingerprinter
//! gave before its normaliser was rewritten for speed (commit e500431):
//! stored bulk counts and listed signatures stay valid as long as these hold.
//! A change here is a change of every stored checksum: say so when you make one.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod corpus;
#[path = "../benches/support/mod.rs"]
mod support;

use portcullis_fingerprint::Fingerprinter;

fn check(message: &[u8], body: &str, words: usize, parts: &[&str], fuzzy: &[&str]) {
    let fp = Fingerprinter::default().fingerprint(message);
    assert_eq!(fp.body.to_hex(), body);
    assert_eq!(fp.words, words);
    let got: Vec<String> = fp.parts.iter().map(|p| p.checksum.to_hex()).collect();
    assert_eq!(got, parts);
    assert_eq!(fp.fuzzy.unwrap().to_hex(), fuzzy.concat());
}

#[test]
fn benchmark_message_is_unchanged() {
    // QP text + QP HTML (tags, links with tracking queries) + base64 attachment.
    check(
        &support::sample(),
        "bd90ee37a3e7b641f99a7b7b5ba84f4180482b82d8d0a7ca3917c82d2ee3660f",
        1640,
        &[
            "1141a7a38d385dced89816fe63be1453f0be71ef819b191e525eccadde59c7c7",
            "6b0058c2ae372b67a583af5e548f94ec727e557ee56412775fb00fe442cbe349",
            "4625b12a2d62f03dcfae9291780f746318942c5a257d71e5378e65b964faea6c",
        ],
        &[
            "2f4e9eac12a1920e98d11f924bf1504927aae33107dfb1132c381fca438b1084",
            "06359bc031fa438c56795e815b96ebae6b230fcb7b78999a5b77f4f32c896431",
            "2c0482a50a47bc794f1e9c800e41d9eb731bbb6a390f7f6405cef5934e52b5df",
            "6c0e66b6008a691d3b6431d08dcc618e634320f85ca7b9b23baee674c9467d2f",
            "131574b1cf925b3e4732fe58c7211bd9e432385c9593232c5a5d651fec0a972c",
            "0ad603b3179812dc157e33840852259c30f0c45a58d9b39e1be37dc25299c158",
            "8b9fd91475a4462f2c583a58110920be12280c52749f4a0d4c4f639b22aa6a14",
            "94182c2e67b022c84bf00b56157f059c7a81eead2930563411e9e91e1925e23c",
        ],
    );
}

#[test]
fn html_message_is_unchanged() {
    check(
        &corpus::html("Ann", "a81f29c3d0e4", "30 April 2026"),
        "706fb70a569dfa070367d4e4281ad84ae2d35ef8d55de8135eea6a12089ecc24",
        57,
        &["8770677778584fb0f47e5d0f8521aacbc98feb3a31c78bcde12c5be8ffa7ffef"],
        &[
            "2f4e9eacb805b5edd47d1fff7d211d2127aae33107dfb11317940b135772b5f1",
            "625c84abd266d9cb7026ea10b87cbe87641040787b78999a658ec27db701ef61",
            "2c0482a50a47bc793d6d127d6580369948d2edf60dc52c4d05cef593e6952b70",
            "519c31e001a84eff6135abe0d58263961af88b4dc2912d7121173f40917eb905",
            "e7d63101958791f84732fe586b4deb4d08069e6267fef7cbbe8509a710a7570d",
            "0ad603b342dc52e60e88d8330f1b97ef005b2b1f041be4c61be37dc26443c044",
            "7e30e2b59cd2aa20b4342313110920be12280c5235462d3e8f6a74f89b15aa54",
            "7bb4d53426f5de4592439938264267e48c7af100f54bb0b7080a1b384da294cc",
        ],
    );
}
