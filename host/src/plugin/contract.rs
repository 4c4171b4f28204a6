//! The plugin contract this host speaks, and recognising a component by what it exports.
//!
//! The version is read from `wit/eddy.wit` at compile time, never written twice. A
//! component exports the contract's interfaces (`eddy:plugin/lifecycle@X`, one of
//! `filter`, `transform` or `aggregate`, and optionally `state`); what it exports says
//! which kind of plugin it is. Versions follow semver, 0.x by its minor number: the host
//! loads a component built against a compatible version and refuses any other with a
//! message naming both.

use anyhow::{bail, Result};

/// The contract version this host speaks: the `package eddy:plugin@…` of `wit/eddy.wit`.
pub const VERSION: &str = package_version(include_str!("../../../wit/eddy.wit"));

/// The package every contract interface belongs to.
const PACKAGE: &str = "eddy:plugin";

/// Finds `package eddy:plugin@VERSION;` in the WIT text (at compile time).
const fn package_version(wit: &str) -> &str {
    let bytes = wit.as_bytes();
    let needle = b"package eddy:plugin@";
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        let mut j = 0;
        while j < needle.len() && bytes[i + j] == needle[j] {
            j += 1;
        }
        if j == needle.len() {
            let start = i + j;
            let mut end = start;
            while end < bytes.len() && bytes[end] != b';' {
                end += 1;
            }
            let (_, rest) = bytes.split_at(start);
            let (version, _) = rest.split_at(end - start);
            return match core::str::from_utf8(version) {
                Ok(v) => v,
                Err(_) => panic!("wit/eddy.wit: the package version is not UTF-8"),
            };
        }
        i += 1;
    }
    panic!("wit/eddy.wit has no `package eddy:plugin@VERSION;` line")
}

/// Which kind of plugin a component is, by the interface it exports besides `lifecycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Exports `filter`: keeps or drops events.
    Filter,
    /// Exports `transform`: rewrites, enriches or fans out events.
    Transform,
    /// Exports `aggregate`: a window aggregate.
    Aggregate,
}

impl World {
    /// The name of the interface that makes a component this kind of plugin.
    pub fn name(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Transform => "transform",
            World::Aggregate => "aggregate",
        }
    }
}

/// What a component's exports say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recognised {
    /// Its kind.
    pub world: World,
    /// Whether it exports the optional `state` interface.
    pub stateful: bool,
}

/// Whether a component built against contract `theirs` runs on a host speaking `ours`.
fn compatible(theirs: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut numbers = core.split('.').map(|n| n.parse::<u64>());
        Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
    };
    match (parts(theirs), parts(ours)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// Recognises a component from the names of its exports.
pub fn recognise<'a>(exports: impl IntoIterator<Item = &'a str>) -> Result<Recognised> {
    let exports: Vec<&str> = exports.into_iter().collect();
    let mut interfaces = Vec::new();
    for name in &exports {
        let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if !compatible(version, VERSION) {
            bail!(
                "was built against the plugin contract {PACKAGE}@{version}, and this Eddy speaks \
                 {PACKAGE}@{VERSION}: rebuild it against this Eddy's wit/ (for Rust, with the \
                 matching eddy-plugin-sdk)",
                version = if version.is_empty() {
                    "(unversioned)"
                } else {
                    version
                }
            );
        }
        interfaces.push(interface);
    }
    if interfaces.is_empty() {
        let top_level_v01 = ["init", "select", "process", "fold"];
        if exports.iter().any(|e| top_level_v01.contains(e)) {
            bail!(
                "was built against the plugin contract {PACKAGE}@0.1.0 (its exports are top-level \
                 functions), and this Eddy speaks {PACKAGE}@{VERSION}, where every export is in an \
                 interface: rebuild it against this Eddy's wit/ (for Rust, with the matching \
                 eddy-plugin-sdk)"
            );
        }
        bail!(
            "exports no interface of {PACKAGE}@{VERSION} (a plugin exports `lifecycle` and one of \
             `filter`, `transform` or `aggregate`); it exports: {}",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        );
    }
    let has = |name: &str| interfaces.contains(&name);
    let kinds: Vec<World> = [World::Filter, World::Transform, World::Aggregate]
        .into_iter()
        .filter(|w| has(w.name()))
        .collect();
    let world = match kinds.as_slice() {
        [world] => *world,
        [] => bail!(
            "exports none of `filter`, `transform` or `aggregate` of {PACKAGE}@{VERSION}; it exports: {}",
            exports.join(", ")
        ),
        _ => bail!(
            "exports more than one of `filter`, `transform` and `aggregate`; a plugin is one kind"
        ),
    };
    if !has("lifecycle") {
        bail!(
            "exports `{}` but not `lifecycle` (with `init`) of {PACKAGE}@{VERSION}",
            world.name()
        );
    }
    if world == World::Aggregate && has("state") {
        bail!("is a window aggregate that exports `state`: an aggregate's state is its accumulators, which the host keeps");
    }
    Ok(Recognised {
        world,
        stateful: has("state"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(interfaces: &[&str], version: &str) -> Vec<String> {
        interfaces
            .iter()
            .map(|i| format!("eddy:plugin/{i}@{version}"))
            .collect()
    }

    fn recognise_names(names: &[String]) -> Result<Recognised> {
        recognise(names.iter().map(String::as_str))
    }

    #[test]
    fn the_version_comes_from_the_wit() {
        let wit = include_str!("../../../wit/eddy.wit");
        assert!(wit.contains(&format!("package eddy:plugin@{VERSION};")));
        assert!(VERSION.starts_with("0."), "{VERSION}");
    }

    #[test]
    fn components_are_recognised_by_their_interfaces() {
        let r = recognise_names(&names(&["lifecycle", "filter"], VERSION)).unwrap();
        assert_eq!((r.world, r.stateful), (World::Filter, false));
        let r = recognise_names(&names(&["lifecycle", "transform", "state"], VERSION)).unwrap();
        assert_eq!((r.world, r.stateful), (World::Transform, true));
        let mut with_extra = names(&["lifecycle", "aggregate"], VERSION);
        with_extra.push("exports".into()); // componentize-py's own interface
        let r = recognise_names(&with_extra).unwrap();
        assert_eq!(r.world, World::Aggregate);
    }

    #[test]
    fn other_versions_are_refused_naming_both() {
        let err = recognise_names(&names(&["lifecycle", "filter"], "0.9.0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("eddy:plugin@0.9.0") && err.contains(&format!("eddy:plugin@{VERSION}")),
            "{err}"
        );
        let err = recognise(["init", "select"]).unwrap_err().to_string();
        assert!(
            err.contains("eddy:plugin@0.1.0") && err.contains(VERSION),
            "{err}"
        );
        // A patch release of the same contract is compatible.
        let (major_minor, _) = VERSION.rsplit_once('.').unwrap();
        let patched = format!("{major_minor}.99");
        assert!(recognise_names(&names(&["lifecycle", "filter"], &patched)).is_ok());
    }

    #[test]
    fn incomplete_or_ambiguous_components_are_refused() {
        let err = recognise_names(&names(&["filter"], VERSION))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not `lifecycle`"), "{err}");
        let err = recognise_names(&names(&["lifecycle", "filter", "transform"], VERSION))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than one"), "{err}");
        let err = recognise(["run"]).unwrap_err().to_string();
        assert!(err.contains("it exports: run"), "{err}");
        assert!(recognise([]).unwrap_err().to_string().contains("nothing"));
    }

    #[test]
    fn semver_for_zero_versions_is_by_minor() {
        assert!(compatible("0.2.0", "0.2.5"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(compatible("1.0.0", "1.4.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("", "0.2.0"));
    }
}
