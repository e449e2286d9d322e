//! Runs request bodies through the `http_server` source's decoding and parsing.
//!
//! The first byte picks the Content-Encoding and the path; the rest is the body. With gzip, the body
//! is also compressed first, so that valid gzip streams reach the size limit and the parsers.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use optimizely_relay::sources::http_server::body::{decode_body, parse_plain, parse_segment};

const CALLS: [&str; 4] = ["track", "batch", "identify", "unknown"];
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_LINE_BYTES: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else { return };
    let gzip = selector & 1 == 1;
    let call = CALLS[usize::from(selector >> 1) % CALLS.len()];

    let decoded = if gzip {
        let _ = decode_body(Some("gzip"), body, MAX_BODY_BYTES);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(body).expect("compress in memory");
        let compressed = encoder.finish().expect("compress in memory");
        match decode_body(Some("gzip"), &compressed, MAX_BODY_BYTES) {
            Ok(decoded) => {
                assert_eq!(decoded, body, "gzip round trip");
                decoded
            }
            Err(_) => {
                assert!(body.len() > MAX_BODY_BYTES, "only bodies over the limit are rejected");
                return;
            }
        }
    } else {
        decode_body(None, body, MAX_BODY_BYTES).expect("an identity body is returned as is")
    };

    let plain = parse_plain(&decoded, MAX_LINE_BYTES);
    for error in &plain.errors {
        assert!(!error.message.is_empty());
    }
    let _ = parse_segment(call, &decoded);
});
