//! The architecture, checked: the module graph of each crate has no cycle,
//! and dependencies point one way (docs/architecture.md).
//!
//! Every `.rs` file of both libraries is parsed (syn); every path that names
//! something of the crate — in `use` declarations, signatures and bodies
//! alike, `crate::`, `super::` and `self::` — is resolved to the module that
//! *defines* the item, following `pub use` re-exports (a facade `mod.rs`
//! re-exporting its children is not a dependency of theirs). Test code
//! (`#[cfg(test)]`) is left out: tests may reach anywhere. The rules:
//! - no circle anywhere: no module import cycle in either crate, and none
//!   between top-level modules either (each module folded into its
//!   top-level one: `http::users` is `http`, `queue::store` is `queue`), so
//!   `state` cannot lean on `http` while `http` leans on `state` even
//!   through modules that do not form a cycle themselves;
//! - the layers of the actor crate: `supervision` and `store` import no
//!   capability; a capability imports only the capabilities below it
//!   ([`ALLOWED`]) and never `system`, which wires them all;
//! - no capability names another capability's actor message type (`*Msg`):
//!   they talk through the narrow handles the callee defines;
//! - the HTTP layer names no BSON/MongoDB type and no actor message type,
//!   and the actor crate has no OpenAPI (`utoipa`) annotations: API views
//!   live in the HTTP layer;
//! - no `pub` function of the actor crate outside `store` (the MongoDB and
//!   Redis adapters) returns a driver error: each capability's seam speaks
//!   its own `thiserror` enum, so its callers map one type and the
//!   driver can change behind it.
//!
//! - files of one idea: no `.rs` file of `src/` or `actors/src/` has more
//!   than [`MAX_LINES`] lines before its inline `#[cfg(test)]` module (a
//!   file that is itself a test module is test code, and left out).
//! - the queue's collections are opened only in `queue::store`: no other
//!   module of either crate names their constants or passes their names
//!   to `.collection(..)`.
//!
//! `cargo test --test architecture` runs it (so do `scripts/lint` and CI).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use syn::visit::Visit;

/// Which capabilities each top-level module of the actor crate may import.
/// `supervision` and `store` are the bottom layer, `system` the top.
const ALLOWED: &[(&str, &[&str])] = &[
    ("validate", &[]),
    ("rfc3339", &[]),
    ("trace", &[]),
    ("supervision", &[]),
    ("store", &[]),
    ("mail", &[]),
    ("limits", &["store"]),
    ("events", &["supervision", "store"]),
    ("queue", &["events", "supervision", "store"]),
    ("cache", &["supervision", "store"]),
    (
        "users",
        &[
            "cache",
            "queue",
            "events",
            "mail",
            "limits",
            "supervision",
            "store",
        ],
    ),
    ("fleet", &["events", "queue", "supervision", "store"]),
    ("migrate", &["users", "queue", "store"]),
];

/// Modules below every layer, which any module may import: `validate`, the
/// seam each configuration type checks itself through, `trace`, how a
/// span's context crosses a mailbox, the blocking pool or a stored job, and
/// `rfc3339`, the one way the API writes times.
const FOUNDATION: &[&str] = &["validate", "trace", "rfc3339"];

/// One crate's modules: what each defines, re-exports and uses.
#[derive(Default)]
struct Crate {
    /// Module path (`users::actor`, `""` for the root) → its facts.
    modules: BTreeMap<String, Module>,
}

#[derive(Default)]
struct Module {
    /// Names of the items it defines (types, functions, constants, …).
    defines: BTreeSet<String>,
    /// `pub use` re-exports: name → the path it re-exports (absolute).
    reexports: BTreeMap<String, Vec<String>>,
    /// `pub use path::*`: absolute module paths.
    globs: Vec<Vec<String>>,
    /// Every path it names, absolute (crate-relative segments).
    uses: Vec<Vec<String>>,
    /// Paths that start with another crate (`mongodb::…`, `troupe_actors::…`).
    external: Vec<Vec<String>>,
    /// Its `pub` functions that return a driver error: `Type::name returns
    /// mongodb::error::Result` (see [`driver_error_returns`]).
    driver_returns: Vec<String>,
    /// String literals passed first to a `.collection(..)` call.
    collections: Vec<String>,
    /// Its string constants (`const NAME: &str = "…"`): name → value.
    strings: BTreeMap<String, String>,
    file: PathBuf,
    /// As written, until every module is known (see [`Crate::finish`]).
    raw_uses: Vec<Vec<String>>,
    raw_reexports: Vec<(String, Vec<String>)>,
    raw_globs: Vec<Vec<String>>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parse every file of the library whose root is `lib`.
fn load(lib: &Path) -> Crate {
    let mut krate = Crate::default();
    load_module(&mut krate, lib, vec![]);
    krate.finish();
    krate
}

fn load_module(krate: &mut Crate, file: &Path, path: Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let dir = if file
        .file_name()
        .is_some_and(|n| n == "lib.rs" || n == "mod.rs")
    {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    let children = collect(krate, &ast.items, &path, file);
    for child in children {
        let mut child_path = path.clone();
        child_path.push(child.clone());
        let single = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let found = if single.exists() { single } else { nested };
        load_module(krate, &found, child_path);
    }
}

/// Record the items of module `path`; returns its file modules (`mod x;`).
fn collect(krate: &mut Crate, items: &[syn::Item], path: &[String], file: &Path) -> Vec<String> {
    let key = path.join("::");
    let mut children = Vec::new();
    let mut inline = Vec::new();
    let aliases = use_aliases(items);
    {
        let module = krate.modules.entry(key).or_default();
        module.file = file.to_path_buf();
        for item in items.iter().filter(|i| !is_test(attrs(i))) {
            if let Some(name) = defined_name(item) {
                module.defines.insert(name);
            }
            if let syn::Item::Const(c) = item {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(value),
                    ..
                }) = &*c.expr
                {
                    module.strings.insert(c.ident.to_string(), value.value());
                }
            }
            match item {
                syn::Item::Mod(m) if m.content.is_none() => children.push(m.ident.to_string()),
                syn::Item::Mod(m) => inline.push(m.clone()),
                syn::Item::Use(u) if matches!(u.vis, syn::Visibility::Public(_)) => {
                    record_reexports(module, &u.tree, &mut vec![]);
                }
                _ => {}
            }
            let mut paths = Paths::default();
            paths.visit_item(item);
            module.raw_uses.extend(paths.found);
            module
                .driver_returns
                .extend(driver_error_returns(item, &aliases));
            module.collections.extend(paths.collections);
        }
    }
    for m in inline {
        let mut child = path.to_vec();
        child.push(m.ident.to_string());
        let (_, items) = m.content.unwrap();
        collect(krate, &items, &child, file);
    }
    children
}

fn attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Const(i) => &i.attrs,
        _ => &[],
    }
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn defined_name(item: &syn::Item) -> Option<String> {
    Some(match item {
        syn::Item::Struct(i) => i.ident.to_string(),
        syn::Item::Enum(i) => i.ident.to_string(),
        syn::Item::Fn(i) => i.sig.ident.to_string(),
        syn::Item::Trait(i) => i.ident.to_string(),
        syn::Item::Type(i) => i.ident.to_string(),
        syn::Item::Const(i) => i.ident.to_string(),
        syn::Item::Static(i) => i.ident.to_string(),
        syn::Item::Union(i) => i.ident.to_string(),
        syn::Item::Mod(i) => i.ident.to_string(),
        syn::Item::Macro(i) => i.ident.as_ref()?.to_string(),
        _ => return None,
    })
}

/// Note what a `pub use` tree re-exports (as written).
fn record_reexports(module: &mut Module, tree: &syn::UseTree, prefix: &mut Vec<String>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            record_reexports(module, &p.tree, prefix);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            full.push(n.ident.to_string());
            module.raw_reexports.push((n.ident.to_string(), full));
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            module.raw_reexports.push((r.rename.to_string(), full));
        }
        syn::UseTree::Glob(_) => module.raw_globs.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                record_reexports(module, t, prefix);
            }
        }
    }
}

/// The names a module's (non-test) `use` declarations bind, each to the
/// path it stands for: `use mongodb::error::Result as Mongo;` binds
/// `Mongo` to `mongodb::error::Result`.
fn use_aliases(items: &[syn::Item]) -> HashMap<String, Vec<String>> {
    // The names a `use` binds are the ones a `pub use` would re-export.
    let mut bound = Module::default();
    for item in items.iter().filter(|i| !is_test(attrs(i))) {
        if let syn::Item::Use(u) = item {
            record_reexports(&mut bound, &u.tree, &mut vec![]);
        }
    }
    bound.raw_reexports.into_iter().collect()
}

/// The `pub` functions `item` declares (a free function, an inherent
/// impl's methods, a public trait's) whose return type names a MongoDB or
/// Redis driver error, directly or through a `use` alias: `Type::name
/// returns mongodb::error::Result` for each. Trait impls follow their
/// trait's signature; test code is left out.
fn driver_error_returns(item: &syn::Item, aliases: &HashMap<String, Vec<String>>) -> Vec<String> {
    let public = |vis: &syn::Visibility| matches!(vis, syn::Visibility::Public(_));
    let mut sigs: Vec<(String, &syn::Signature)> = Vec::new();
    match item {
        syn::Item::Fn(f) if public(&f.vis) => sigs.push((String::new(), &f.sig)),
        syn::Item::Impl(i) if i.trait_.is_none() => {
            let owner = match &*i.self_ty {
                syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
                _ => None,
            };
            let owner = format!("{}::", owner.unwrap_or_default());
            for inner in &i.items {
                if let syn::ImplItem::Fn(f) = inner {
                    if public(&f.vis) && !is_test(&f.attrs) {
                        sigs.push((owner.clone(), &f.sig));
                    }
                }
            }
        }
        syn::Item::Trait(t) if public(&t.vis) => {
            for inner in &t.items {
                if let syn::TraitItem::Fn(f) = inner {
                    sigs.push((format!("{}::", t.ident), &f.sig));
                }
            }
        }
        _ => {}
    }
    let mut found = Vec::new();
    for (owner, sig) in sigs {
        let syn::ReturnType::Type(_, ty) = &sig.output else {
            continue;
        };
        let mut paths = Paths::default();
        paths.visit_type(ty);
        for path in paths.found {
            let mut full = aliases
                .get(&path[0])
                .cloned()
                .unwrap_or_else(|| vec![path[0].clone()]);
            full.extend(path[1..].iter().cloned());
            if names_a_driver_error(&full) {
                found.push(format!("{owner}{} returns {}", sig.ident, full.join("::")));
            }
        }
    }
    found
}

/// Whether `path` (aliases expanded) is a driver's error or result type:
/// anything in `mongodb::error`, `redis::RedisError`, `redis::RedisResult`.
fn names_a_driver_error(path: &[String]) -> bool {
    let is = |i: usize, name: &str| path.get(i).is_some_and(|s| s == name);
    (is(0, "mongodb") && is(1, "error") && path.len() > 2)
        || path.iter().any(|s| s == "RedisError" || s == "RedisResult")
        || (is(0, "redis") && (is(1, "Error") || is(1, "Result")))
}

/// Every path named in an item, as segments (`use` trees flattened).
#[derive(Default)]
struct Paths {
    found: Vec<Vec<String>>,
    prefix: Vec<String>,
    /// String literals passed first to `.collection(..)`.
    collections: Vec<String>,
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.found
            .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                self.prefix.push(p.ident.to_string());
                self.visit_use_tree(&p.tree);
                self.prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = self.prefix.clone();
                full.push(n.ident.to_string());
                self.found.push(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = self.prefix.clone();
                full.push(r.ident.to_string());
                self.found.push(full);
            }
            syn::UseTree::Glob(_) => self.found.push(self.prefix.clone()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.visit_use_tree(t)),
        }
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "collection" {
            if let Some(syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            })) = call.args.first()
            {
                self.collections.push(name.value());
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    // Test code may reach anywhere.
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    // An inline module's items are collected as that module's own.
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !matches!(item, syn::Item::Mod(m) if m.content.is_some()) {
            syn::visit::visit_item(self, item);
        }
    }
}

/// `crate::`/`super::`/`self::` paths as crate-relative segments; `None`
/// for anything else (another crate, a local name, a prelude item). A path
/// that starts with a child module or an item of `here` is relative to it
/// (`use inner::Thing;` next to `mod inner;`): `local` says which are.
fn absolute(path: &[String], here: &[String], local: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let mut base = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) if path.len() > 1 && local(first) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

impl Crate {
    /// Turn every path as written into a crate-relative one (or an
    /// external one), now that every module and item is known.
    fn finish(&mut self) {
        let names: Vec<String> = self.modules.keys().cloned().collect();
        for name in names {
            let here: Vec<String> = if name.is_empty() {
                vec![]
            } else {
                name.split("::").map(str::to_owned).collect()
            };
            let local = |first: &str| {
                let child = if name.is_empty() {
                    first.to_owned()
                } else {
                    format!("{name}::{first}")
                };
                self.modules.contains_key(&child) || self.modules[&name].defines.contains(first)
            };
            let module = &self.modules[&name];
            let mut uses = Vec::new();
            let mut external = Vec::new();
            for p in &module.raw_uses {
                match absolute(p, &here, local) {
                    Some(abs) => uses.push(abs),
                    None => external.push(p.clone()),
                }
            }
            let reexports: BTreeMap<String, Vec<String>> = module
                .raw_reexports
                .iter()
                .filter_map(|(n, p)| Some((n.clone(), absolute(p, &here, local)?)))
                .collect();
            let globs: Vec<Vec<String>> = module
                .raw_globs
                .iter()
                .filter_map(|p| absolute(p, &here, local))
                .collect();
            let module = self.modules.get_mut(&name).unwrap();
            module.uses = uses;
            module.external = external;
            module.reexports = reexports;
            module.globs = globs;
        }
    }

    /// The module that defines what `path` names (re-exports followed).
    fn resolve(&self, path: &[String], depth: usize) -> String {
        let mut split = path.len();
        while split > 0 && !self.modules.contains_key(&path[..split].join("::")) {
            split -= 1;
        }
        let module = path[..split].join("::");
        let Some(name) = path.get(split) else {
            return module;
        };
        let facts = &self.modules[&module];
        if depth > 16 || facts.defines.contains(name) {
            return module;
        }
        if let Some(target) = facts.reexports.get(name) {
            let mut target = target.clone();
            target.extend(path[split + 1..].iter().cloned());
            return self.resolve(&target, depth + 1);
        }
        for glob in &facts.globs {
            let g = glob.join("::");
            if self
                .modules
                .get(&g)
                .is_some_and(|m| m.defines.contains(name) || m.reexports.contains_key(name))
            {
                let mut target = glob.clone();
                target.extend(path[split..].iter().cloned());
                return self.resolve(&target, depth + 1);
            }
        }
        module
    }

    /// Module → the modules it depends on (not counting its own
    /// descendants: a module declaring and re-exporting its children is a
    /// facade, not their dependent).
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph = BTreeMap::new();
        for (name, module) in &self.modules {
            let deps: BTreeSet<String> = module
                .uses
                .iter()
                .map(|p| self.resolve(p, 0))
                .filter(|dep| dep != name && !is_within(dep, name))
                .collect();
            graph.insert(name.clone(), deps);
        }
        graph
    }
}

/// Whether module `inner` is `outer` or lies inside it.
fn is_within(inner: &str, outer: &str) -> bool {
    outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}::"))
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The graph with every module folded into its top-level module
/// (`http::users` → `http`): an edge wherever a module of one names a module
/// of another. The crate root (a facade) is left out.
fn folded(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, deps) in graph {
        let from = top(from);
        if from.is_empty() {
            continue;
        }
        let entry = tops.entry(from.to_owned()).or_default();
        for to in deps.iter().map(|d| top(d)) {
            if to != from && !to.is_empty() {
                entry.insert(to.to_owned());
            }
        }
    }
    tops
}

/// Each cycle of the graph, as its modules.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut g = DiGraphMap::<&str, ()>::new();
    for (from, deps) in graph {
        g.add_node(from);
        for to in deps {
            g.add_edge(from, to, ());
        }
    }
    tarjan_scc(&g)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| scc.into_iter().map(str::to_owned).collect())
        .collect()
}

fn actors() -> &'static Crate {
    static CRATE: std::sync::OnceLock<Crate> = std::sync::OnceLock::new();
    CRATE.get_or_init(|| load(&root().join("actors/src/lib.rs")))
}

fn service() -> &'static Crate {
    static CRATE: std::sync::OnceLock<Crate> = std::sync::OnceLock::new();
    CRATE.get_or_init(|| load(&root().join("src/lib.rs")))
}

#[test]
fn neither_crate_has_a_module_import_cycle() {
    for (name, krate) in [("troupe-actors", actors()), ("troupe", service())] {
        let graph = krate.graph();
        assert!(
            graph.len() > 10,
            "{name}: the checker found too few modules"
        );
        let found = cycles(&graph);
        assert!(found.is_empty(), "{name}: module import cycles: {found:#?}");
    }
}

#[test]
fn neither_crate_has_a_cycle_between_top_level_modules() {
    for (name, krate) in [("troupe-actors", actors()), ("troupe", service())] {
        let tops = folded(&krate.graph());
        assert!(
            tops.len() > 5,
            "{name}: the checker found too few top-level modules"
        );
        let found = cycles(&tops);
        // Which edges close each circle, so the fix is plain.
        let edges: Vec<String> = krate
            .graph()
            .iter()
            .flat_map(|(from, deps)| deps.iter().map(move |to| (from, to)))
            .filter(|(from, to)| {
                top(from) != top(to)
                    && found
                        .iter()
                        .any(|c| c.iter().any(|m| m == top(from)) && c.iter().any(|m| m == top(to)))
            })
            .map(|(from, to)| format!("{from} -> {to}"))
            .collect();
        assert!(
            found.is_empty(),
            "{name}: cycles between top-level modules: {found:#?}\nthrough: {edges:#?}"
        );
    }
}

#[test]
fn actor_crate_dependencies_point_one_way() {
    let allowed: HashMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    assert!(
        FOUNDATION.iter().all(|m| allowed.get(m) == Some(&&[][..])),
        "a foundation module imports nothing"
    );
    let mut wrong = Vec::new();
    for (module, deps) in actors().graph() {
        let from = top(&module);
        if from.is_empty() || from == "system" {
            continue;
        }
        let may = allowed
            .get(from)
            .unwrap_or_else(|| panic!("{from}: a top-level module missing from ALLOWED"));
        for dep in deps {
            let to = top(&dep);
            let foundation = FOUNDATION.contains(&to);
            if to != from && !to.is_empty() && !foundation && !may.contains(&to) {
                wrong.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers: {wrong:#?}"
    );
}

#[test]
fn no_capability_names_another_capabilitys_messages() {
    let krate = actors();
    let mut wrong = Vec::new();
    for (module, facts) in &krate.modules {
        if top(module) == "system" {
            continue;
        }
        for path in &facts.uses {
            let Some(last) = path.last() else { continue };
            let defined_in = krate.resolve(path, 0);
            if last.ends_with("Msg") && top(&defined_in) != top(module) {
                wrong.push(format!("{module} names {}", path.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_http_layer_names_no_bson_and_no_actor_message() {
    let mut wrong = Vec::new();
    for (module, facts) in &service().modules {
        if !is_within(module, "http") {
            continue;
        }
        // Two segments at least: `mongodb::Database`, not a local `mongodb`.
        for path in facts.external.iter().filter(|p| p.len() > 1) {
            let first = path.first().map(String::as_str);
            let names_bson = matches!(first, Some("mongodb" | "bson"));
            let names_msg =
                first == Some("troupe_actors") && path.last().is_some_and(|s| s.ends_with("Msg"));
            if names_bson || names_msg || first == Some("ractor") {
                wrong.push(format!(
                    "{module} ({}) names {}",
                    facts.file.display(),
                    path.join("::")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_actor_crate_has_no_openapi_annotations() {
    let mut wrong = Vec::new();
    for (module, facts) in &actors().modules {
        for path in &facts.external {
            if path.first().map(String::as_str) == Some("utoipa") {
                wrong.push(format!("{module} names {}", path.join("::")));
            }
        }
    }
    let manifest = std::fs::read_to_string(root().join("actors/Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("utoipa"),
        "actors/Cargo.toml depends on utoipa"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Each `pub` function of `krate` outside `store`
/// (relative to `base`, a file or a folder) that returns a driver error:
/// `file: Type::name returns …`.
fn driver_error_seams(krate: &Crate, base: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (module, facts) in &krate.modules {
        let file = facts.file.strip_prefix(base).unwrap_or(&facts.file);
        if top(module) == "store" {
            continue;
        }
        for seam in &facts.driver_returns {
            found.push(format!("{}: {seam}", file.display()));
        }
    }
    found.sort();
    found
}

#[test]
fn no_public_function_outside_the_store_returns_a_driver_error() {
    let wrong = driver_error_seams(actors(), &root());
    assert!(
        wrong.is_empty(),
        "return the capability's own error (a thiserror enum with a variant \
         for the store), not the driver's: {wrong:#?}"
    );
}

/// The rule itself, on a tiny crate: a driver error returned by a `pub`
/// function, method or public trait's function is found, through a `use`
/// alias and inside other types too; the store, private functions,
/// parameters, typed errors and tests are not.
#[test]
fn the_checker_finds_a_driver_error_behind_an_alias_and_spares_the_store() {
    let dir = std::env::temp_dir().join(format!("troupe-arch-errors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("lib.rs", "pub mod store;\npub mod a;\n");
    write(
        "store.rs",
        "pub fn connect() -> mongodb::error::Result<()> { todo!() }\n",
    );
    write(
        "a.rs",
        r#"
use mongodb::error::Result as Mongo;
use redis::RedisError;
pub struct S;
pub enum AError {}
impl S {
    pub async fn aliased(&self) -> Mongo<u64> { todo!() }
    pub fn nested(&self) -> Option<Result<(), RedisError>> { todo!() }
    pub fn typed(&self) -> Result<(), AError> { todo!() }
    fn private(&self) -> mongodb::error::Result<()> { todo!() }
}
pub trait T { fn seam(&self) -> redis::RedisResult<()>; }
pub fn free() -> Result<(), mongodb::error::Error> { todo!() }
pub fn takes(err: &mongodb::error::Error) -> bool { todo!() }
#[cfg(test)]
mod tests { pub fn helper() -> mongodb::error::Result<()> { todo!() } }
"#,
    );
    let krate = load(&dir.join("lib.rs"));
    assert_eq!(
        driver_error_seams(&krate, &dir),
        [
            "a.rs: S::aliased returns mongodb::error::Result",
            "a.rs: S::nested returns redis::RedisError",
            "a.rs: T::seam returns redis::RedisResult",
            "a.rs: free returns mongodb::error::Error",
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checker itself: a cycle through a re-export is found, a facade is not one.
#[test]
fn the_checker_finds_a_cycle_through_a_reexport_and_accepts_a_facade() {
    let dir = std::env::temp_dir().join(format!("troupe-arch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a/mod.rs", "mod inner;\npub use inner::Thing;\n");
    write(
        "a/inner.rs",
        "pub struct Thing;\nfn f() { let _ = crate::b::Other; }\n",
    );
    write(
        "b.rs",
        "pub struct Other;\nfn g() { let _ = crate::a::Thing; }\n",
    );
    let krate = load(&dir.join("lib.rs"));
    let found = cycles(&krate.graph());
    assert_eq!(found.len(), 1, "{found:?}");
    let mut cycle = found[0].clone();
    cycle.sort();
    assert_eq!(cycle, ["a::inner", "b"]);
    // Without b's use of a, only the facade's edges remain: no cycle.
    write("b.rs", "pub struct Other;\n");
    assert!(cycles(&load(&dir.join("lib.rs")).graph()).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checker itself: two top-level modules leaning on each other through
/// different children form a circle the module graph alone does not show;
/// a facade re-exporting its child does not.
#[test]
fn the_checker_finds_a_cycle_between_top_level_modules_through_different_children() {
    let dir = std::env::temp_dir().join(format!("troupe-arch-top-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("http")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("lib.rs", "pub mod http;\npub mod state;\n");
    write("state/mod.rs", "mod inner;\npub use inner::State;\n");
    write(
        "state/inner.rs",
        "pub struct State;\nfn f() { let _ = crate::http::probes::Probes; }\n",
    );
    write("http/mod.rs", "pub mod handlers;\npub mod probes;\n");
    write("http/probes.rs", "pub struct Probes;\n");
    write(
        "http/handlers.rs",
        "fn h() { let _ = crate::state::State; }\n",
    );
    let krate = load(&dir.join("lib.rs"));
    assert!(cycles(&krate.graph()).is_empty(), "no module-level cycle");
    let found = cycles(&folded(&krate.graph()));
    assert_eq!(found.len(), 1, "{found:?}");
    let mut cycle = found[0].clone();
    cycle.sort();
    assert_eq!(cycle, ["http", "state"]);
    // With the probes below both (their own top-level module), no circle.
    write("lib.rs", "pub mod http;\npub mod probes;\npub mod state;\n");
    write("http/mod.rs", "pub mod handlers;\n");
    std::fs::remove_file(dir.join("http/probes.rs")).unwrap();
    write("probes.rs", "pub struct Probes;\n");
    write(
        "state/inner.rs",
        "pub struct State;\nfn f() { let _ = crate::probes::Probes; }\n",
    );
    assert!(cycles(&folded(&load(&dir.join("lib.rs")).graph())).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Most lines of code a file may have before its inline test module.
const MAX_LINES: usize = 500;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The files `file` declares as test modules (`#[cfg(test)] mod tests;`).
fn test_module_files(file: &Path, text: &str) -> Vec<PathBuf> {
    let Ok(ast) = syn::parse_file(text) else {
        return vec![];
    };
    let dir = if file
        .file_name()
        .is_some_and(|n| n == "lib.rs" || n == "mod.rs" || n == "main.rs")
    {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    ast.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if m.content.is_none() && is_test(&m.attrs) => Some(m),
            _ => None,
        })
        .flat_map(|m| {
            let name = m.ident.to_string();
            [
                dir.join(format!("{name}.rs")),
                dir.join(&name).join("mod.rs"),
            ]
        })
        .collect()
}

/// Lines before the file's first top-level inline `#[cfg(test)]` module
/// (all of them without one).
fn code_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_end() != "#[cfg(test)]" {
            continue;
        }
        // The item the attribute is on, past any further attributes.
        let item = lines[i + 1..]
            .iter()
            .find(|l| !l.starts_with("#[") && !l.trim().is_empty());
        let inline_mod = item.is_some_and(|l| {
            let l = l
                .strip_prefix("pub ")
                .or(l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            l.starts_with("mod ") && l.trim_end().ends_with('{')
        });
        if inline_mod {
            return i;
        }
    }
    lines.len()
}

/// Each offending file with its count (paths relative to the repository).
fn oversized(root: &Path, dirs: &[&str], max: usize) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root.join(dir), &mut files);
    }
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect();
    let tests: BTreeSet<PathBuf> = texts
        .iter()
        .flat_map(|(f, text)| test_module_files(f, text))
        .collect();
    let mut offenders: Vec<(String, usize)> = texts
        .iter()
        .filter(|(f, _)| !tests.contains(f))
        .map(|(f, text)| {
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, code_lines(text))
        })
        .filter(|(_, n)| *n > max)
        .collect();
    offenders.sort();
    offenders
}

#[test]
fn no_file_has_more_than_500_lines_of_code_before_its_tests() {
    let offenders = oversized(&root(), &["src", "actors/src"], MAX_LINES);
    let listed: Vec<String> = offenders
        .iter()
        .map(|(file, n)| format!("{file}: {n} lines"))
        .collect();
    assert!(
        offenders.is_empty(),
        "files over {MAX_LINES} lines of code before #[cfg(test)]:\n{}",
        listed.join("\n")
    );
}

/// The file-size checker itself: code before an inline test module counts,
/// the tests do not, and a file declared as a test module is left out.
#[test]
fn the_size_checker_counts_code_before_the_tests_and_skips_test_files() {
    let dir = std::env::temp_dir().join(format!("troupe-arch-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/big")).unwrap();
    let write = |file: &str, text: String| std::fs::write(dir.join(file), text).unwrap();
    let code = |n: usize| "fn f() {}\n".repeat(n);
    write(
        "src/lib.rs",
        format!("pub mod big;\npub mod small;\n{}", code(1)),
    );
    // 6 lines of code (with its `mod`s), then a long inline test module.
    write(
        "src/small.rs",
        format!("{}#[cfg(test)]\nmod tests {{\n{}}}\n", code(6), code(50)),
    );
    // A test module in a file of its own: test code, however long.
    write(
        "src/big/mod.rs",
        format!("{}#[cfg(test)]\nmod tests;\n", code(3)),
    );
    write("src/big/tests.rs", code(50));
    write("src/long.rs", code(11));
    assert_eq!(
        code_lines(&std::fs::read_to_string(dir.join("src/small.rs")).unwrap()),
        6
    );
    let found = oversized(&dir, &["src"], 10);
    assert_eq!(found, [("src/long.rs".to_string(), 11)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The module that owns the queue's collections, and where the failure
/// message sends a query.
const QUEUE_STORE: &str = "queue::store";

/// Where `krate` (or, for the service crate, `owner`, the actor crate)
/// names one of the queue's collections outside [`QUEUE_STORE`]: a path to
/// one of its string constants (the collection names), or one of their
/// values passed to `.collection(..)`. (`"jobs"` as a JSON field or a
/// metric label is no collection.)
fn queue_collections_named_outside_the_store(krate: &Crate, owner: &Crate) -> Vec<String> {
    let names = &owner.modules[QUEUE_STORE].strings;
    let store_segments: Vec<String> = QUEUE_STORE.split("::").map(str::to_owned).collect();
    let mut wrong = Vec::new();
    for (module, facts) in &krate.modules {
        if is_within(module, QUEUE_STORE) && std::ptr::eq(krate, owner) {
            continue;
        }
        let mut named = |what: String| {
            wrong.push(format!("{module} ({}) {what}", facts.file.display()));
        };
        for literal in facts
            .collections
            .iter()
            .filter(|l| names.values().any(|n| n == *l))
        {
            named(format!("opens the collection {literal:?}"));
        }
        let internal = facts
            .uses
            .iter()
            .filter(|p| krate.resolve(p, 0) == QUEUE_STORE);
        // From the service crate: `troupe_actors::queue::store::NAME`.
        let external = facts
            .external
            .iter()
            .filter(|p| p.len() > 1 && p[1..p.len() - 1] == store_segments[..]);
        for path in internal.chain(external) {
            if path.last().is_some_and(|last| names.contains_key(last)) {
                named(format!("names {}", path.join("::")));
            }
        }
    }
    wrong
}

#[test]
fn only_the_queue_store_opens_the_queues_collections() {
    let names = &actors().modules[QUEUE_STORE].strings;
    for collection in [
        "jobs",
        "job_attempts",
        "job_keys",
        "queue_slots",
        "queue_pauses",
    ] {
        assert!(
            names.values().any(|n| n == collection),
            "{QUEUE_STORE} names no constant for {collection}: {names:?}"
        );
    }
    let mut wrong = queue_collections_named_outside_the_store(actors(), actors());
    wrong.extend(queue_collections_named_outside_the_store(
        service(),
        actors(),
    ));
    assert!(
        wrong.is_empty(),
        "the queue's collections are read and written only in {QUEUE_STORE} \
         (actors/src/queue/store/): give JobStore (or a room of queue::store, \
         like store::adopt for migrations) the query, and call it instead:\n{wrong:#?}"
    );
}

/// The queue-collection rule itself: a literal or a constant outside the
/// store is found, the store's own queries and a `"jobs"` label are not.
#[test]
fn the_checker_finds_a_queue_collection_opened_outside_the_store() {
    let dir = std::env::temp_dir().join(format!("troupe-arch-queue-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("queue")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("lib.rs", "pub mod queue;\npub mod other;\n");
    write("queue/mod.rs", "pub mod store;\n");
    write(
        "queue/store.rs",
        "pub const JOBS: &str = \"jobs\";\nfn f(db: &Db) { db.collection::<Job>(JOBS); db.collection::<Job>(\"jobs\"); }\n",
    );
    write(
        "other.rs",
        "fn g(db: &Db) { db.collection::<Doc>(\"jobs\"); let _ = crate::queue::store::JOBS; \
         let _ = json!({ \"jobs\": 1 }); db.collection::<Doc>(\"users\"); }\n",
    );
    let krate = load(&dir.join("lib.rs"));
    let found = queue_collections_named_outside_the_store(&krate, &krate);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|f| f.starts_with("other ")), "{found:#?}");
    assert!(
        found[0].contains("opens the collection \"jobs\""),
        "{found:#?}"
    );
    assert!(found[1].contains("names queue::store::JOBS"), "{found:#?}");
    write("other.rs", "fn g() { let _ = json!({ \"jobs\": 1 }); }\n");
    let krate = load(&dir.join("lib.rs"));
    assert!(queue_collections_named_outside_the_store(&krate, &krate).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
