//! Checks of the component graph: inputs exist and carry the right kind of data, every default output
//! is consumed, and there are no cycles.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{did_you_mean, ConfigError};

/// The kind of data an output carries. Inputs accept only some kinds, so a miswired graph (a dead-letter
/// output fed to the Event API sink) is rejected before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Segment messages from a source.
    Messages,
    /// Event API conversions.
    Conversions,
    /// User deletion requests.
    Deletions,
    /// Dead-letter records.
    DeadLetters,
}

impl DataKind {
    /// Returns the name used in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            DataKind::Messages => "Segment messages",
            DataKind::Conversions => "Event API conversions",
            DataKind::Deletions => "deletion requests",
            DataKind::DeadLetters => "dead-letter records",
        }
    }
}

/// One component as the graph checks see it.
pub struct Node {
    /// The section and id, as `sinks.out`, for error messages.
    pub label: String,
    /// The component id.
    pub id: String,
    /// The component's inputs as configured.
    pub inputs: Vec<String>,
    /// Output names (`None` for the default output), their data kind, and whether leaving them
    /// unconsumed is an error.
    pub outputs: Vec<OutputSpec>,
    /// The data kinds the component accepts; empty for sources.
    pub accepts: Vec<DataKind>,
}

/// One output of a [`Node`].
pub struct OutputSpec {
    /// `None` for the default output, else the name after the dot.
    pub name: Option<&'static str>,
    /// The kind of data on the output.
    pub kind: DataKind,
    /// Whether the configuration must connect this output to a consumer.
    pub required: bool,
}

/// Checks the graph, returning every problem found. Inputs that name a component in `unknown` (one
/// that failed to load, and whose outputs are therefore not known) are taken as valid.
pub fn check_graph(nodes: &[Node], unknown: &BTreeSet<String>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut outputs: BTreeMap<String, (DataKind, bool, &str)> = BTreeMap::new();
    for node in nodes {
        for output in &node.outputs {
            let id = output_id(&node.id, output.name);
            outputs.insert(id, (output.kind, output.required, node.label.as_str()));
        }
    }

    let mut consumed: BTreeSet<&str> = BTreeSet::new();
    for node in nodes {
        for input in &node.inputs {
            let component = input.split('.').next().unwrap_or(input);
            if unknown.contains(component) {
                continue;
            }
            match outputs.get(input) {
                None => {
                    let hint = did_you_mean(input, outputs.keys().map(String::as_str));
                    errors.push(ConfigError::component(
                        &node.label,
                        format!("input `{input}` does not name a component or output{hint}"),
                    ));
                }
                Some((kind, _, _)) if !node.accepts.contains(kind) => {
                    let accepted: Vec<&str> = node.accepts.iter().map(|kind| kind.describe()).collect();
                    errors.push(ConfigError::component(
                        &node.label,
                        format!(
                            "input `{input}` carries {} but this component accepts {}",
                            kind.describe(),
                            accepted.join(" or ")
                        ),
                    ));
                }
                Some(_) => {
                    consumed.insert(input.as_str());
                }
            }
        }
    }

    for (id, (kind, required, label)) in &outputs {
        if *required && !consumed.contains(id.as_str()) {
            errors.push(ConfigError::component(
                *label,
                format!(
                    "output `{id}` ({}) is not consumed; add `{id}` to the `inputs` of a {}",
                    kind.describe(),
                    if *kind == DataKind::Messages { "transform or sink" } else { "sink" }
                ),
            ));
        }
    }

    errors.extend(find_cycle(nodes));
    errors
}

/// Returns the full id of an output: `id` or `id.name`.
pub fn output_id(component: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{component}.{name}"),
        None => component.to_owned(),
    }
}

fn component_of(input: &str, nodes: &[Node]) -> Option<usize> {
    nodes.iter().position(|node| {
        input == node.id || node.outputs.iter().any(|output| output_id(&node.id, output.name) == input)
    })
}

/// Depth-first search for a cycle, reported once with its path.
fn find_cycle(nodes: &[Node]) -> Option<ConfigError> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; nodes.len()];
    let mut path = Vec::new();
    for start in 0..nodes.len() {
        if state[start] == 0 {
            if let Some(cycle) = visit(start, nodes, &mut state, &mut path) {
                let names: Vec<&str> = cycle.iter().map(|index| nodes[*index].id.as_str()).collect();
                return Some(ConfigError::global(format!(
                    "the components form a cycle: {}; remove one of these inputs",
                    names.join(" -> ")
                )));
            }
        }
    }
    None
}

fn visit(index: usize, nodes: &[Node], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
    state[index] = 1;
    path.push(index);
    for input in &nodes[index].inputs {
        let Some(upstream) = component_of(input, nodes) else { continue };
        if state[upstream] == 1 {
            let start = path.iter().position(|node| *node == upstream).unwrap_or(0);
            let mut cycle = path[start..].to_vec();
            cycle.push(upstream);
            return Some(cycle);
        }
        if state[upstream] == 0 {
            if let Some(cycle) = visit(upstream, nodes, state, path) {
                return Some(cycle);
            }
        }
    }
    path.pop();
    state[index] = 2;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(id: &str) -> Node {
        Node {
            label: format!("sources.{id}"),
            id: id.to_owned(),
            inputs: vec![],
            outputs: vec![OutputSpec { name: None, kind: DataKind::Messages, required: true }],
            accepts: vec![],
        }
    }

    fn transform(id: &str, inputs: &[&str]) -> Node {
        Node {
            label: format!("transforms.{id}"),
            id: id.to_owned(),
            inputs: inputs.iter().map(|input| input.to_string()).collect(),
            outputs: vec![
                OutputSpec { name: None, kind: DataKind::Conversions, required: true },
                OutputSpec { name: Some("dropped"), kind: DataKind::DeadLetters, required: false },
            ],
            accepts: vec![DataKind::Messages],
        }
    }

    fn sink(id: &str, inputs: &[&str], accepts: &[DataKind]) -> Node {
        Node {
            label: format!("sinks.{id}"),
            id: id.to_owned(),
            inputs: inputs.iter().map(|input| input.to_string()).collect(),
            outputs: vec![OutputSpec { name: Some("dropped"), kind: DataKind::DeadLetters, required: false }],
            accepts: accepts.to_vec(),
        }
    }

    #[test]
    fn valid_graph_has_no_errors() {
        let nodes = vec![
            source("in"),
            transform("opt", &["in"]),
            sink("api", &["opt"], &[DataKind::Conversions]),
            sink("dlq", &["opt.dropped", "api.dropped"], &[DataKind::DeadLetters, DataKind::Conversions]),
        ];
        assert_eq!(check_graph(&nodes, &BTreeSet::new()), vec![]);
    }

    #[test]
    fn misspelled_input_gets_hint() {
        let nodes =
            vec![source("in"), transform("opt", &["in"]), sink("api", &["opt.droped"], &[DataKind::DeadLetters])];
        let errors = check_graph(&nodes, &BTreeSet::new());
        assert!(errors.iter().any(|error| error.to_string()
            == "sinks.api: input `opt.droped` does not name a component or output; did you mean `opt.dropped`?"));
    }

    #[test]
    fn wrong_data_kind_rejected() {
        let nodes = vec![
            source("in"),
            transform("opt", &["in"]),
            sink("api", &["opt", "opt.dropped"], &[DataKind::Conversions]),
        ];
        let errors = check_graph(&nodes, &BTreeSet::new());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("`opt.dropped` carries dead-letter records"), "{}", errors[0]);
    }

    #[test]
    fn unconsumed_default_output_rejected() {
        let nodes =
            vec![source("in"), transform("opt", &["in"]), sink("dlq", &["opt.dropped"], &[DataKind::DeadLetters])];
        let errors = check_graph(&nodes, &BTreeSet::new());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.starts_with("output `opt` (Event API conversions) is not consumed"), "{}", errors[0]);
    }

    #[test]
    fn cycle_reported_with_path() {
        let nodes = vec![
            source("in"),
            sink("a", &["in", "b.dropped"], &[DataKind::Messages, DataKind::DeadLetters]),
            sink("b", &["a.dropped"], &[DataKind::DeadLetters]),
        ];
        let errors = check_graph(&nodes, &BTreeSet::new());
        assert!(
            errors.iter().any(|error| error.message.starts_with("the components form a cycle: a -> b -> a")),
            "{errors:?}"
        );
    }
}
