//! `${VAR}` and `${VAR:-default}` interpolation of environment variables into string values.
//!
//! Only string values are interpolated, after TOML parsing, so a variable's content can never change
//! the structure of the file. `$$` writes a literal `$`.

/// Interpolates every string value of `value` in place. `lookup` returns a variable's value.
///
/// Returns one message per problem, with the key path, naming the variable but never its value.
pub fn interpolate_value(value: &mut toml::Value, path: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut errors = Vec::new();
    match value {
        toml::Value::String(text) => match interpolate_str(text, lookup) {
            Ok(result) => *text = result,
            Err(message) => errors.push(format!("`{path}`: {message}")),
        },
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                errors.extend(interpolate_value(item, &format!("{path}[{index}]"), lookup));
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                errors.extend(interpolate_value(item, &child, lookup));
            }
        }
        _ => {}
    }
    errors
}

/// Interpolates one string.
pub fn interpolate_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;

    while let Some(position) = rest.find('$') {
        result.push_str(&rest[..position]);
        let after = &rest[position + 1..];

        if let Some(stripped) = after.strip_prefix('$') {
            result.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            result.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(format!("unterminated `${{` in `{text}`; close it with `}}` or write `$$` for a literal `$`"));
        };

        let expression = &body_start[..end];
        result.push_str(&resolve(expression, lookup)?);
        rest = &body_start[end + 1..];
    }

    result.push_str(rest);
    Ok(result)
}

fn resolve(expression: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match expression.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expression, None),
    };

    let valid_name = !name.is_empty()
        && name.chars().all(|character| character.is_ascii_alphanumeric() || character == '_')
        && !name.starts_with(|character: char| character.is_ascii_digit());
    if !valid_name {
        return Err(format!(
            "invalid variable name `{name}`; names contain letters, digits and `_` and do not start with a digit"
        ));
    }

    match (lookup(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set; set it or give a default with `${{{name}:-default}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variable_is_replaced() {
        assert_eq!(interpolate_str("Bearer ${TOKEN}!", &environment).unwrap(), "Bearer abc!");
    }

    #[test]
    fn default_used_when_unset() {
        assert_eq!(interpolate_str("${MISSING:-fallback}", &environment).unwrap(), "fallback");
    }

    #[test]
    fn set_empty_variable_wins_over_default() {
        assert_eq!(interpolate_str("[${EMPTY:-x}]", &environment).unwrap(), "[]");
    }

    #[test]
    fn double_dollar_is_literal() {
        assert_eq!(interpolate_str("cost $$5 and $${TOKEN}", &environment).unwrap(), "cost $5 and ${TOKEN}");
    }

    #[test]
    fn lone_dollar_is_kept() {
        assert_eq!(interpolate_str("$opt_user_agent", &environment).unwrap(), "$opt_user_agent");
    }

    #[test]
    fn missing_variable_is_named() {
        let error = interpolate_str("${NOPE}", &environment).unwrap_err();
        assert!(error.contains("`NOPE` is not set"), "{error}");
    }

    #[test]
    fn unterminated_reference_rejected() {
        assert!(interpolate_str("${TOKEN", &environment).unwrap_err().contains("unterminated"));
    }

    #[test]
    fn nested_values_report_key_path() {
        let mut value: toml::Value = toml::from_str("a = { b = ['x', '${NOPE}'] }").unwrap();
        let errors = interpolate_value(&mut value, "", &environment);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("`a.b[1]`"), "{}", errors[0]);
    }
}
