//! Loading whole configurations.

use std::path::Path;

use super::*;

fn errors_of(text: &str) -> Vec<String> {
    match Config::from_toml(text, Path::new(""), &|_| None) {
        Ok(_) => panic!("the configuration loaded"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

const DATAFILE: &str = "[transforms.opt.datafile]\npath = \"d.json\"\n";

#[test]
fn option_and_graph_errors_reported_together() {
    let errors = errors_of(&format!(
        "[sources.in]\ntype = \"stdin\"\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"inn\"]\nrevenue_unit = \"dolars\"\n{DATAFILE}[sinks.out]\ntype = \"console\"\ninputs = [\"opt\"]\n"
    ));

    assert!(
        errors.iter().any(|error| error.starts_with("transforms.opt: invalid value for `revenue_unit`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error
            == "transforms.opt: input `inn` does not name a component or output; did you mean `in`?"),
        "{errors:?}"
    );
}

#[test]
fn failed_component_not_reported_as_missing() {
    let errors = errors_of(&format!(
        "[sources.in]\ntype = \"stdin\"\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"in\"]\n{DATAFILE}[sinks.out]\ntype = \"consol\"\ninputs = [\"opt\"]\n[sinks.dlq]\ntype = \"file\"\npath = \"x\"\ninputs = [\"out.dropped\"]\n"
    ));

    assert_eq!(
        errors,
        vec![
            "sinks.out: unknown type `consol`; did you mean `console`? (known types: optimizely_events, optimizely_user_deletion, console, file)"
        ]
    );
}

#[test]
fn buffer_typo_gets_prefixed_hint() {
    let errors = errors_of(&format!(
        "[sources.in]\ntype = \"stdin\"\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"in\"]\n{DATAFILE}[sinks.out]\ntype = \"console\"\ninputs = [\"opt\"]\nbuffer.max_evnts = 5\nbuffer.when_full = \"drop_oldest\"\n"
    ));

    assert!(
        errors.contains(&"sinks.out: unknown option `buffer.max_evnts`; did you mean `buffer.max_events`?".to_owned()),
        "{errors:?}"
    );
    assert!(
        errors.contains(
            &"sinks.out: invalid value for `buffer.when_full`: `drop_oldest` is not one of `block`, `drop_newest`; did you mean `drop_newest`?"
                .to_owned()
        ),
        "{errors:?}"
    );
}

#[test]
fn buffer_settings_loaded_for_sinks() {
    let text = format!(
        "[sources.in]\ntype = \"stdin\"\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"in\"]\n{DATAFILE}[sinks.out]\ntype = \"console\"\ninputs = [\"opt\"]\nbuffer.max_events = 5\nbuffer.when_full = \"drop_newest\"\n"
    );
    let config = Config::from_toml(&text, Path::new(""), &|_| None).unwrap();

    let buffer = config.sinks["out"].buffer;
    assert_eq!(buffer.max_events, 5);
    assert_eq!(buffer.when_full, crate::topology::WhenFull::DropNewest);
}

#[test]
fn missing_sections_reported() {
    let errors = errors_of("shutdown_timeout_secs = 5\n");
    assert_eq!(
        errors,
        vec!["no source is configured; add a `[sources.ID]` table", "no sink is configured; add a `[sinks.ID]` table"]
    );
}

#[test]
fn misspelled_section_gets_hint() {
    let errors = errors_of("[source.in]\ntype = \"stdin\"\n");
    assert!(errors.contains(&"unknown option `source`; did you mean `sources`?".to_owned()), "{errors:?}");
}

#[test]
fn relative_paths_resolved_against_config_directory() {
    let text = format!(
        "data_dir = \"state\"\n[sources.in]\ntype = \"file\"\ninclude = [\"logs/*.ndjson\"]\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"in\"]\n{DATAFILE}[sinks.out]\ntype = \"file\"\ninputs = [\"opt\"]\npath = \"/tmp/absolute.ndjson\"\n"
    );
    let config = Config::from_toml(&text, Path::new("/etc/relay"), &|_| None).unwrap();

    assert_eq!(config.global.data_dir.as_deref(), Some(Path::new("/etc/relay/state")));
    let SourceConfig::File(source) = &config.sources["in"] else { panic!("expected a file source") };
    assert_eq!(source.include, vec!["/etc/relay/logs/*.ndjson"]);
    let TransformConfig::Optimizely(transform) = &config.transforms["opt"].config;
    assert_eq!(transform.datafile.path.as_deref(), Some(Path::new("/etc/relay/d.json")));
    let SinkConfig::File(sink) = &config.sinks["out"].config else { panic!("expected a file sink") };
    assert_eq!(sink.path, Path::new("/tmp/absolute.ndjson"));
}

#[test]
fn tests_tables_ignored_when_loading() {
    let text = format!(
        "[sources.in]\ntype = \"stdin\"\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"in\"]\n{DATAFILE}[sinks.out]\ntype = \"console\"\ninputs = [\"opt\"]\n[[tests]]\nname = \"t\"\nunchecked = \"${{NOT_SET}}\"\n"
    );
    assert!(Config::from_toml(&text, Path::new(""), &|_| None).is_ok());
}

#[test]
fn misspelled_tests_key_gets_hint() {
    let errors = errors_of("[[test]]\nname = \"t\"\n");
    assert!(errors.contains(&"unknown option `test`; did you mean `tests`?".to_owned()), "{errors:?}");
}
