//! Per-event cost of the transform's stages: parse, map, encode, and all three together.
//!
//!     cargo bench --bench transform
//!
//! The `borrowed_*` and `write_visitor` benchmarks measure the path of messages that sources pass
//! on as text (`stdin`, `file`): the sonic-rs parse into a `BorrowedValue` with one `ParseBuffer`,
//! the mapping, and the body writer. `borrowed_parse_map_encoded` is the transform's own path: the
//! parse, then the mapping that writes the visitor entry as it goes. The others measure the `serde_json::Value` path of library
//! callers and serde's derived encoding.

mod workload;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use optimizely_relay::event::{Conversion, Payload};
use optimizely_relay::sources::decode::decode_line;
use optimizely_relay::transforms::optimizely::borrowed::{BorrowedValue, ParseBuffer};
use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::mapper::MapperSettings;
use optimizely_relay::transforms::optimizely::{MapOutcome, Mapper, OptimizelyTransform, OptimizelyTransformConfig};

/// The relay binary's allocator, so that the figures include its allocation costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn settings_and_datafile() -> (OptimizelyTransformConfig, Arc<Datafile>) {
    let text = "revenue_unit = \"dollars\"\n[datafile]\npath = \"unused\"\n[event_keys]\n\"Order Completed\" = \"order_completed\"\n\"Signed Up\" = \"signed_up\"\n";
    let config: OptimizelyTransformConfig = toml::from_str(text).expect("settings");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/quickstart-datafile.json");
    let datafile = Datafile::parse(&std::fs::read(path).expect("datafile")).expect("valid datafile");
    (config, Arc::new(datafile))
}

fn transform() -> OptimizelyTransform {
    let (config, datafile) = settings_and_datafile();
    OptimizelyTransform::new("opt", &config, datafile)
}

fn mapper() -> Mapper {
    let (config, datafile) = settings_and_datafile();
    Mapper::new(Arc::new(MapperSettings::from(&config)), datafile)
}

/// Returns the non-empty lines of NDJSON text.
fn lines(input: &[u8]) -> Vec<&[u8]> {
    input.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()).collect()
}

/// Returns the conversion of a mapping outcome, or `None` for other outcomes.
fn conversion(outcome: MapOutcome) -> Option<Conversion> {
    match outcome {
        MapOutcome::Conversion(conversion, _) => Some(conversion),
        _ => None,
    }
}

fn stages(criterion: &mut Criterion) {
    let input = workload::generate(1000, 11);
    let lines = lines(&input);
    let transform = transform();
    let messages: Vec<serde_json::Value> = lines.iter().filter_map(|line| serde_json::from_slice(line).ok()).collect();
    let conversions: Vec<Conversion> =
        messages.iter().filter_map(|message| conversion(transform.map_message(message))).collect();

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

fn borrowed_stages(criterion: &mut Criterion) {
    let input = workload::generate(1000, 11);
    let lines = lines(&input);
    let mapper = mapper();
    let transform = transform();
    let conversions: Vec<Conversion> = lines.iter().filter_map(|line| conversion(transform.map_bytes(line))).collect();

    let mut group = criterion.benchmark_group("transform");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("borrowed_parse", |bencher| {
        let mut buffer = ParseBuffer::default();
        bencher.iter(|| {
            for line in &lines {
                criterion::black_box(BorrowedValue::parse(line, &mut buffer).is_ok());
            }
        })
    });
    group.bench_function("borrowed_parse_map", |bencher| {
        let mut buffer = ParseBuffer::default();
        bencher.iter(|| {
            for line in &lines {
                if let Ok(message) = BorrowedValue::parse(line, &mut buffer) {
                    criterion::black_box(mapper.map_borrowed(&message));
                }
            }
        })
    });
    group.throughput(Throughput::Elements(conversions.len() as u64));
    group.bench_function("write_visitor", |bencher| {
        let mut output = Vec::new();
        bencher.iter(|| {
            for conversion in &conversions {
                output.clear();
                conversion.visitor.write_json(&mut output);
                criterion::black_box(output.len());
            }
        })
    });
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("borrowed_parse_map_write", |bencher| {
        let mut buffer = ParseBuffer::default();
        bencher.iter(|| {
            for line in &lines {
                if let Ok(message) = BorrowedValue::parse(line, &mut buffer) {
                    if let MapOutcome::Conversion(conversion, _) = mapper.map_borrowed(&message) {
                        let mut output = Vec::new();
                        conversion.visitor.write_json(&mut output);
                        criterion::black_box(output);
                    }
                }
            }
        })
    });
    group.bench_function("borrowed_parse_map_encoded", |bencher| {
        let mut buffer = ParseBuffer::default();
        bencher.iter(|| {
            for line in &lines {
                if let Ok(message) = BorrowedValue::parse(line, &mut buffer) {
                    criterion::black_box(mapper.map_borrowed_encoded(&message, line.len()).is_ok());
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, stages, borrowed_stages);
criterion_main!(benches);
