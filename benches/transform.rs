//! Per-event cost of the transform's stages: parse, map, encode, and all three together.
//!
//!     cargo bench --bench transform

mod workload;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use optimizely_relay::event::Payload;
use optimizely_relay::sources::decode::decode_line;
use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::{MapOutcome, OptimizelyTransform, OptimizelyTransformConfig};

fn transform() -> OptimizelyTransform {
    let text = "revenue_unit = \"dollars\"\n[datafile]\npath = \"unused\"\n[event_keys]\n\"Order Completed\" = \"order_completed\"\n\"Signed Up\" = \"signed_up\"\n";
    let config: OptimizelyTransformConfig = toml::from_str(text).expect("settings");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/quickstart-datafile.json");
    let datafile = Datafile::parse(&std::fs::read(path).expect("datafile")).expect("valid datafile");
    OptimizelyTransform::new("opt", &config, Arc::new(datafile))
}

fn stages(criterion: &mut Criterion) {
    let input = workload::generate(1000, 11);
    let lines: Vec<&[u8]> = input.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()).collect();
    let transform = transform();
    let messages: Vec<serde_json::Value> = lines.iter().filter_map(|line| serde_json::from_slice(line).ok()).collect();
    let conversions: Vec<_> = messages
        .iter()
        .filter_map(|message| match transform.map_message(message) {
            MapOutcome::Conversion(conversion, _) => Some(conversion),
            _ => None,
        })
        .collect();

    let mut group = criterion.benchmark_group("transform");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse", |bencher| {
        bencher.iter(|| {
            let mut payloads = Vec::with_capacity(1);
            for line in &lines {
                decode_line(line, &mut payloads);
                payloads.clear();
            }
        })
    });
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("map", |bencher| {
        bencher.iter(|| {
            for message in &messages {
                criterion::black_box(transform.map_message(message));
            }
        })
    });
    group.throughput(Throughput::Elements(conversions.len() as u64));
    group.bench_function("encode", |bencher| {
        bencher.iter(|| {
            for conversion in &conversions {
                criterion::black_box(serde_json::to_vec(&conversion.visitor).expect("encodes"));
            }
        })
    });
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_map_encode", |bencher| {
        bencher.iter_batched(
            Vec::new,
            |mut payloads| {
                for line in &lines {
                    decode_line(line, &mut payloads);
                    for payload in payloads.drain(..) {
                        if let Payload::Message(message) = payload {
                            if let MapOutcome::Conversion(conversion, _) = transform.map_message(&message) {
                                criterion::black_box(serde_json::to_vec(&conversion.visitor).expect("encodes"));
                            }
                        }
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
