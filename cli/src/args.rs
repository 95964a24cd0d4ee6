//! A small argument parser: positionals, `--name value`, `--name=value`,
//! `-n value` and boolean flags, declared per command.

use std::collections::HashMap;

/// A usage error: printed as one line, exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

/// One option a command accepts.
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    pub takes_value: bool,
}

/// Shorthand for an option taking a value.
pub const fn value(long: &'static str, short: Option<char>) -> Opt {
    Opt {
        long,
        short,
        takes_value: true,
    }
}

/// Shorthand for a boolean flag.
pub const fn flag(long: &'static str, short: Option<char>) -> Opt {
    Opt {
        long,
        short,
        takes_value: false,
    }
}

/// Parsed arguments of one command.
pub struct Args {
    pub positional: Vec<String>,
    values: HashMap<&'static str, String>,
}

impl Args {
    pub fn parse(command: &str, raw: &[String], opts: &[Opt]) -> Result<Self, UsageError> {
        let mut args = Self {
            positional: Vec::new(),
            values: HashMap::new(),
        };
        let mut iter = raw.iter();
        while let Some(arg) = iter.next() {
            let (opt, inline) = if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_string())),
                    None => (long, None),
                };
                let opt = opts.iter().find(|o| o.long == name);
                (
                    opt.ok_or_else(|| UsageError(format!("{command}: unknown option --{name}")))?,
                    inline,
                )
            } else if arg.len() == 2 && arg.starts_with('-') && arg != "--" {
                let c = arg.chars().nth(1).expect("two chars");
                let opt = opts.iter().find(|o| o.short == Some(c));
                (
                    opt.ok_or_else(|| UsageError(format!("{command}: unknown option -{c}")))?,
                    None,
                )
            } else {
                args.positional.push(arg.clone());
                continue;
            };
            let value = match (opt.takes_value, inline) {
                (true, Some(value)) => value,
                (true, None) => iter.next().cloned().ok_or_else(|| {
                    UsageError(format!("{command}: --{} needs a value", opt.long))
                })?,
                (false, None) => String::new(),
                (false, Some(_)) => {
                    return Err(UsageError(format!(
                        "{command}: --{} takes no value",
                        opt.long
                    )));
                }
            };
            args.values.insert(opt.long, value);
        }
        Ok(args)
    }

    pub fn get(&self, long: &str) -> Option<&str> {
        self.values.get(long).map(String::as_str)
    }

    pub fn has(&self, long: &str) -> bool {
        self.values.contains_key(long)
    }

    /// The positional at `index`, or a usage error naming it.
    pub fn positional(&self, index: usize, command: &str, name: &str) -> Result<&str, UsageError> {
        self.positional
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| UsageError(format!("{command}: missing {name}")))
    }

    /// Fails when more than `max` positionals were given.
    pub fn at_most(&self, max: usize, command: &str) -> Result<(), UsageError> {
        match self.positional.get(max) {
            Some(extra) => Err(UsageError(format!(
                "{command}: unexpected argument '{extra}'"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: [Opt; 2] = [value("size", Some('s')), flag("shrink", None)];

    fn parse(raw: &[&str]) -> Result<Args, UsageError> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        Args::parse("t", &raw, &OPTS)
    }

    #[test]
    fn accepts_all_spellings() {
        for raw in [
            &["x", "--size", "1G"][..],
            &["x", "--size=1G"],
            &["-s", "1G", "x"],
        ] {
            let args = parse(raw).unwrap();
            assert_eq!(args.get("size"), Some("1G"));
            assert_eq!(args.positional, ["x"]);
        }
        assert!(parse(&["--shrink"]).unwrap().has("shrink"));
    }

    #[test]
    fn rejects_unknown_and_missing_values() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--size"]).is_err());
        assert!(parse(&["--shrink=1"]).is_err());
    }
}
