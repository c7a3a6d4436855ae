//! The docs, checked against the code, so that what README.md and docs/*.md
//! show cannot rot:
//! - every endpoint they name — a `curl` line's URL, or `METHOD /path` in the
//!   text — is one the service serves: an operation of its OpenAPI document
//!   (`troupe::http::openapi_document`), or one of the few routes outside it;
//! - every `troupe …` command line they show parses (`troupe::cli::Cli`);
//! - every `scripts/<name> --flag` names a script that takes that flag.
//!
//! `cargo test --test docs` runs it (no services needed).

use std::path::{Path, PathBuf};

use clap::Parser;
use regex::Regex;

/// Routes the service serves outside its OpenAPI document.
const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api"),
    ("GET", "/api-json"),
    ("GET", "/ops/console"),
    ("GET", "/ops/console/assets/{file}"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md: (name, text).
fn pages() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(root()).unwrap_or(&path).display();
            let text = std::fs::read_to_string(&path).expect("a readable page");
            (name.to_string(), text)
        })
        .collect()
}

/// An endpoint a page names: where, the method and the path as written.
#[derive(Debug)]
struct Shown {
    at: String,
    method: String,
    path: String,
}

/// Every endpoint `text` names (`at` says which page).
fn endpoints(at: &str, text: &str) -> Vec<Shown> {
    let prose = Regex::new(r"\b(GET|POST|PUT|PATCH|DELETE) +(/[^\s`'\x22),;]*)").unwrap();
    let url = Regex::new(
        r"(?:\$B|\$\{B\}|https?://(?:127\.0\.0\.1|localhost)(?::\d+)?|(?:127\.0\.0\.1|localhost):\d+)(/[^\s'\x22]*)",
    )
    .unwrap();
    let explicit = Regex::new(r"(?:-X|--request) *([A-Z]+)").unwrap();
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{at}:{}", n + 1);
        for hit in prose.captures_iter(line) {
            found.push(Shown {
                at: at.clone(),
                method: hit[1].to_owned(),
                path: hit[2].to_owned(),
            });
        }
        let Some(curl) = line.find("curl ") else {
            continue;
        };
        let line = &line[curl..];
        let method = match explicit.captures(line) {
            Some(m) => m[1].to_owned(),
            None if [" -d ", " --data", " -F "].iter().any(|d| line.contains(d)) => "POST".into(),
            None => "GET".into(),
        };
        for hit in url.captures_iter(line) {
            found.push(Shown {
                at: at.clone(),
                method: method.clone(),
                path: hit[1].to_owned(),
            });
        }
    }
    found
}

/// A segment the docs write for "some value": `<id>`, `{id}`, `$JOB`, `…`.
fn is_placeholder(segment: &str) -> bool {
    segment.starts_with(['<', '{', '$']) || segment == "…" || segment == "..."
}

/// The path's segments, without query, fragment or trailing punctuation.
fn segments(path: &str) -> Vec<&str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.trim_end_matches(['.', ':', '/']);
    path.split('/').skip(1).collect()
}

/// Whether the path the docs wrote matches the route `template`.
fn matches(shown: &str, template: &str) -> bool {
    let (shown, template) = (segments(shown), segments(template));
    shown.len() == template.len()
        && shown.iter().zip(&template).all(|(s, t)| {
            if t.starts_with('{') {
                true // a parameter takes any value, placeholder or example
            } else {
                !is_placeholder(s) && s == t
            }
        })
}

/// Every (method, route) the service serves.
fn routes() -> Vec<(String, String)> {
    let document = troupe::http::openapi_document();
    let mut routes: Vec<(String, String)> = UNDOCUMENTED_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    for (path, item) in &document.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, served) in methods {
            if served {
                routes.push((method.into(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_endpoint_the_docs_show_is_served() {
    let routes = routes();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (page, text) in pages() {
        for shown in endpoints(&page, &text) {
            checked += 1;
            let served = routes
                .iter()
                .any(|(method, route)| *method == shown.method && matches(&shown.path, route));
            if !served {
                wrong.push(format!("{}: {} {}", shown.at, shown.method, shown.path));
            }
        }
    }
    assert!(
        checked > 30,
        "the checker found too few endpoints ({checked})"
    );
    assert!(
        wrong.is_empty(),
        "endpoints the docs show that the service does not serve: {wrong:#?}"
    );
}

/// Every `troupe …` command line of `text`: its arguments.
fn troupe_commands(text: &str) -> Vec<(usize, Vec<String>)> {
    // In a code span or at the start of a code line; `target/…/troupe` too.
    let command = Regex::new(
        r"(?:^|`|\$ |;\s*)(?:target/(?:release|debug)/)?troupe((?: +-{0,2}[a-z][a-z-]*)*)",
    )
    .unwrap();
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        for hit in command.captures_iter(line) {
            let args = hit[1].split_whitespace().map(str::to_owned).collect();
            found.push((n + 1, args));
        }
    }
    found
}

#[test]
fn every_troupe_command_the_docs_show_parses() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (page, text) in pages() {
        for (line, args) in troupe_commands(&text) {
            checked += 1;
            let argv = std::iter::once("troupe".to_owned()).chain(args.iter().cloned());
            if let Err(err) = troupe::cli::Cli::try_parse_from(argv) {
                use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
                if !matches!(err.kind(), DisplayHelp | DisplayVersion) {
                    wrong.push(format!(
                        "{page}:{line}: troupe {}: {}",
                        args.join(" "),
                        err.kind()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 5,
        "the checker found too few commands ({checked})"
    );
    assert!(wrong.is_empty(), "commands that do not parse: {wrong:#?}");
}

#[test]
fn every_script_the_docs_show_exists_with_its_flags() {
    // `scripts/x.ts` (with an extension) is another project's file.
    let script = Regex::new(r"scripts/([a-z][a-z-]*)(\.[a-z]+)?((?: +--?[a-z][a-z-]*)*)").unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (page, text) in pages() {
        for (n, line) in text.lines().enumerate() {
            for hit in script.captures_iter(line) {
                if hit.get(2).is_some() {
                    continue;
                }
                checked += 1;
                let path: &Path = &root().join("scripts").join(&hit[1]);
                let Ok(source) = std::fs::read_to_string(path) else {
                    wrong.push(format!("{page}:{}: no scripts/{}", n + 1, &hit[1]));
                    continue;
                };
                for flag in hit[3].split_whitespace() {
                    if !source.contains(flag) {
                        wrong.push(format!(
                            "{page}:{}: scripts/{} takes no {flag}",
                            n + 1,
                            &hit[1]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 10,
        "the checker found too few scripts ({checked})"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The checker itself: placeholders match parameters only, literals must
/// be equal, and a method is part of the route.
#[test]
fn the_checker_tells_a_served_endpoint_from_one_that_is_not() {
    assert!(matches("/jobs/<job id>", "/jobs/{id}"));
    assert!(matches("/jobs/$JOB?wait=5s", "/jobs/{id}"));
    assert!(matches("/users/6b1…", "/users/{id}"));
    assert!(!matches("/jobs/<id>", "/jobs/stats"));
    assert!(!matches("/jobs/stats/extra", "/jobs/stats"));
    assert!(!matches("/job/stats", "/jobs/stats"));
    let shown = endpoints(
        "x",
        "curl -s $B/jobs -H \"$OPS\" -d '{}'\ncurl -X DELETE 127.0.0.1:3001/ops/x\nsee `GET /ops/cluster`.",
    );
    let shown: Vec<_> = shown
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(shown, ["POST /jobs", "DELETE /ops/x", "GET /ops/cluster"]);
    let commands =
        troupe_commands("`troupe migrate --dry-run` and\n$ target/release/troupe config check");
    let commands: Vec<_> = commands
        .into_iter()
        .map(|(_, args)| args.join(" "))
        .collect();
    assert_eq!(commands, ["migrate --dry-run", "config check"]);
}
