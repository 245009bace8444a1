//! Keys set from the environment, as twelve-factor deployments expect:
//! `PURSER_METRICS__LISTEN=0.0.0.0:9477` sets `listen` in `[metrics]`,
//! `PURSER_RULES__LOW_BALANCE__REPEAT=2h` sets `repeat` in
//! `[rules.low_balance]`. Sections are separated by two underscores; a
//! value that reads as TOML (a number, `true`, `["a", "b"]`) is taken as
//! such, anything else as a string. Lists of tables (`[[accounts]]`) are
//! set in the file.

/// The prefix every such variable starts with.
const PREFIX: &str = "PURSER_";

/// The overrides among `vars`: (variable, key path, value), in name order.
pub(super) fn overrides(
    vars: impl Iterator<Item = (String, String)>,
) -> Vec<(String, Vec<String>, toml::Value)> {
    let mut found: Vec<_> = vars
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(PREFIX)?;
            if !rest.contains("__") {
                // PURSER_STORE_URL, PURSER_LOG_FORMAT: named settings, not keys.
                return None;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            Some((name, path, value_of(&value)))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// `text` as TOML would read it after `key = `, or as a string.
fn value_of(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Sets each override in `doc`; says which could not be set, and why.
pub(super) fn apply(
    doc: &mut toml::Table,
    overrides: &[(String, Vec<String>, toml::Value)],
) -> Vec<(String, String)> {
    let mut refused = Vec::new();
    for (name, path, value) in overrides {
        if let Err(why) = set(doc, path, value.clone()) {
            refused.push((name.clone(), why));
        }
    }
    refused
}

fn set(doc: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, sections)) = path.split_last() else {
        return Err("names no key".into());
    };
    if path.iter().any(String::is_empty) {
        return Err("names an empty section or key".into());
    }
    let mut table = doc;
    let mut at = String::new();
    for section in sections {
        at = if at.is_empty() {
            section.clone()
        } else {
            format!("{at}.{section}")
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(_) => {
                return Err(format!("{at} is a list of tables: set it in the file"));
            }
            _ => return Err(format!("{at} is a value, not a section")),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn sections_are_split_at_double_underscores_and_values_read_as_toml_where_they_can_be() {
        let found = overrides(vars(&[
            ("PURSER_RULES__LOW_BALANCE__REPEAT", "2h"),
            ("PURSER_HTTP__MAX_CONNECTIONS", "100"),
            ("PURSER_STORE_URL", "postgres://x"),
            ("HOME", "/root"),
            ("PURSER_APPROVALS__CHANNELS", "[\"ops\"]"),
        ]));
        let names: Vec<_> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "PURSER_APPROVALS__CHANNELS",
                "PURSER_HTTP__MAX_CONNECTIONS",
                "PURSER_RULES__LOW_BALANCE__REPEAT"
            ]
        );
        assert_eq!(found[1].2, toml::Value::Integer(100));
        assert_eq!(found[2].1, ["rules", "low_balance", "repeat"]);
        assert_eq!(found[2].2, toml::Value::String("2h".into()));
        let mut doc: toml::Table =
            toml::from_str("[rules.low_balance]\nrepeat = \"4h\"\n").unwrap();
        assert!(apply(&mut doc, &found).is_empty());
        assert_eq!(doc["rules"]["low_balance"]["repeat"].as_str(), Some("2h"));
        assert_eq!(doc["http"]["max_connections"].as_integer(), Some(100));
    }

    #[test]
    fn a_list_of_tables_or_a_value_cannot_be_entered() {
        let mut doc: toml::Table =
            toml::from_str("[store]\npath = \"p.db\"\n[[accounts]]\nid = \"a\"\n").unwrap();
        let refused = apply(
            &mut doc,
            &overrides(vars(&[
                ("PURSER_ACCOUNTS__ID", "b"),
                ("PURSER_STORE__PATH__X", "y"),
                ("PURSER_STORE__", "y"),
            ])),
        );
        let why: Vec<_> = refused.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            why,
            [
                "accounts is a list of tables: set it in the file",
                "names an empty section or key",
                "store.path is a value, not a section",
            ]
        );
    }
}
