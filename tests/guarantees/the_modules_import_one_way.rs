//! No two source files depend on each other, directly or around a circle:
//! the modules of `src/` and `actors/src/` import one way.
//!
//! The rule, so that it finds design cycles and nothing else: file A
//! depends on file B when A names an item (function, type, constant, trait,
//! macro) that is *defined* in B, by a `use` or by a path in its code
//! (`crate::…`, `super::…`, `self::…`, or a path through a module in
//! scope). A re-export is followed to where the item is defined, so a
//! `mod.rs` that re-exports its children (`pub use child::Item`) is a
//! facade, not a dependency; declaring a submodule (`mod child;`), and a
//! submodule naming its own parent's items (`super::Coordinator`, to add an
//! `impl` block of the parent's type in a file of its own), is nesting, not
//! an import: a folder and its `mod.rs` are one unit split for reading.
//! Further up it is an import: a pass of `jobs/dedup/` naming an item of
//! `jobs/mod.rs` while that names the pass's items is a cycle. Importing a
//! module itself (`use super::ids;`)
//! counts only through the items then named through it. Test code
//! (`#[cfg(test)]`) is left out: it may reach anywhere. Paths inside macro
//! invocations (`format!(…)`) are not parsed, and paths into other crates
//! cannot close a cycle (cargo refuses those). The test fails naming each
//! cycle, with the path that makes each of its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

type ModId = usize;

/// One module: a file, or a `mod x { … }` inside one.
struct Module {
    file: PathBuf,
    parent: Option<ModId>,
    root: ModId,
    children: BTreeMap<String, ModId>,
    items: BTreeSet<String>,
    uses: Vec<UseEntry>,
    /// The module's own items, test code left out, to look for paths in.
    code: Vec<syn::Item>,
}

/// One name a `use` brings in (or a glob).
struct UseEntry {
    /// The name in scope; `None` for a glob.
    name: Option<String>,
    path: Vec<String>,
    public: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Module(ModId),
    /// An item defined in this module.
    Item(ModId),
}

#[derive(Default)]
struct Tree {
    modules: Vec<Module>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let text = a.meta.require_list().map(|l| l.tokens.to_string());
            text.is_ok_and(|t| t.trim() == "test")
        }
    })
}

fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                out.push((prefix.last().cloned(), prefix.clone()));
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                out.push((Some(name), path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((Some(r.rename.to_string()), path));
        }
        syn::UseTree::Glob(_) => out.push((None, prefix.clone())),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| flatten_use(t, prefix, out)),
    }
}

impl Tree {
    /// Reads the module rooted at `file` (a crate root or a `mod x;`).
    fn load_file(&mut self, file: &Path, parent: Option<ModId>, child_dir: PathBuf) -> ModId {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        self.load_items(file, parent, child_dir, parsed.items)
    }

    fn load_items(
        &mut self,
        file: &Path,
        parent: Option<ModId>,
        child_dir: PathBuf,
        items: Vec<syn::Item>,
    ) -> ModId {
        let id = self.modules.len();
        let root = parent.map_or(id, |p| self.modules[p].root);
        self.modules.push(Module {
            file: file.to_path_buf(),
            parent,
            root,
            children: BTreeMap::new(),
            items: BTreeSet::new(),
            uses: Vec::new(),
            code: Vec::new(),
        });
        for item in items {
            if is_cfg_test(item_attrs(&item)) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    let child = match m.content {
                        Some((_, inner)) => {
                            self.load_items(file, Some(id), child_dir.join(&name), inner)
                        }
                        None => {
                            let flat = child_dir.join(format!("{name}.rs"));
                            let (path, dir) = if flat.exists() {
                                (flat, child_dir.join(&name))
                            } else {
                                (child_dir.join(&name).join("mod.rs"), child_dir.join(&name))
                            };
                            self.load_file(&path, Some(id), dir)
                        }
                    };
                    self.modules[id].children.insert(name, child);
                }
                syn::Item::Use(u) => {
                    let mut flat = Vec::new();
                    flatten_use(&u.tree, &mut Vec::new(), &mut flat);
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    for (name, path) in flat {
                        self.modules[id].uses.push(UseEntry { name, path, public });
                    }
                }
                other => {
                    if let Some(name) = item_name(&other) {
                        self.modules[id].items.insert(name);
                    }
                    self.modules[id].code.push(other);
                }
            }
        }
        id
    }

    /// Where `path`, written in module `from`, leads; `None` for another
    /// crate's path (or one this reading cannot follow).
    fn resolve(&self, from: ModId, path: &[String], depth: usize) -> Option<Target> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let m = &self.modules[from];
        let (mut at, rest) = match path[0].as_str() {
            "crate" => (m.root, &path[1..]),
            "super" => (m.parent?, &path[1..]),
            "self" => (from, &path[1..]),
            first => {
                if let Some(&child) = m.children.get(first) {
                    (child, &path[1..])
                } else if let Some(u) = m.uses.iter().find(|u| u.name.as_deref() == Some(first)) {
                    let target = self.resolve(from, &u.path, depth + 1)?;
                    match target {
                        Target::Module(t) => (t, &path[1..]),
                        item => return Some(item),
                    }
                } else if m.items.contains(first) {
                    return Some(Target::Item(from));
                } else {
                    return None;
                }
            }
        };
        for seg in rest {
            if seg == "super" {
                at = self.modules[at].parent?;
                continue;
            }
            match self.lookup(at, seg, depth) {
                Some(Target::Module(next)) => at = next,
                Some(item) => return Some(item),
                // Not found by this reading (a generated item): say it is
                // defined where the path points.
                None => return Some(Target::Item(at)),
            }
        }
        Some(Target::Module(at))
    }

    /// The name `seg` as seen from outside module `at`.
    fn lookup(&self, at: ModId, seg: &str, depth: usize) -> Option<Target> {
        let m = &self.modules[at];
        if let Some(&child) = m.children.get(seg) {
            return Some(Target::Module(child));
        }
        if m.items.contains(seg) {
            return Some(Target::Item(at));
        }
        if let Some(u) = m.uses.iter().find(|u| u.name.as_deref() == Some(seg)) {
            return self.resolve(at, &u.path, depth + 1);
        }
        for glob in m.uses.iter().filter(|u| u.name.is_none()) {
            if let Some(Target::Module(g)) = self.resolve(at, &glob.path, depth + 1) {
                if let Some(found) = self.lookup(g, seg, depth + 1) {
                    return Some(found);
                }
            }
        }
        None
    }

    fn is_descendant(&self, mut m: ModId, of: ModId) -> bool {
        while let Some(p) = self.modules[m].parent {
            if p == of {
                return true;
            }
            m = p;
        }
        false
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        Fn(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    use syn::Item::*;
    let ident = match item {
        Const(i) => &i.ident,
        Enum(i) => &i.ident,
        Fn(i) => &i.sig.ident,
        Macro(i) => i.ident.as_ref()?,
        Static(i) => &i.ident,
        Struct(i) => &i.ident,
        Trait(i) => &i.ident,
        Type(i) => &i.ident,
        Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

/// The multi-segment paths of a module's code, test code left out.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl<'a> Visit<'a> for Paths {
    fn visit_path(&mut self, p: &'a syn::Path) {
        if p.segments.len() >= 2 && p.leading_colon.is_none() {
            self.0
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }
    fn visit_item_mod(&mut self, _: &'a syn::ItemMod) {}
    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// File -> file it depends on -> one path that makes the edge.
type Edges = BTreeMap<PathBuf, BTreeMap<PathBuf, String>>;

fn edges(tree: &Tree, base: &Path) -> Edges {
    let mut edges = Edges::new();
    let rel = |p: &Path| p.strip_prefix(base).unwrap_or(p).to_path_buf();
    for (id, m) in tree.modules.iter().enumerate() {
        let mut add = |target: Option<Target>, path: &[String]| {
            let Some(Target::Item(d)) = target else {
                return;
            };
            let to = &tree.modules[d].file;
            // A file naming its own folder's `mod.rs` (a Coordinator's
            // `impl` block in `coordinator/flow.rs`) is nesting.
            let parent_file = m.parent.map(|p| &tree.modules[p].file);
            if to != &m.file && Some(to) != parent_file {
                edges
                    .entry(rel(&m.file))
                    .or_default()
                    .entry(rel(to))
                    .or_insert_with(|| path.join("::"));
            }
        };
        for u in &m.uses {
            let target = tree.resolve(id, &u.path, 0);
            if u.name.is_none() {
                // A glob depends on the file it reads from, unless it
                // re-exports a child.
                if let Some(Target::Module(g)) = target {
                    if !(u.public && tree.is_descendant(g, id)) {
                        add(Some(Target::Item(g)), &u.path);
                    }
                }
                continue;
            }
            let facade = u.public
                && matches!(&u.path[..], [first, ..] if m.children.contains_key(first) || first == "self");
            if !facade {
                add(target, &u.path);
            }
        }
        let mut paths = Paths::default();
        m.code.iter().for_each(|item| paths.visit_item(item));
        for path in paths.0 {
            add(tree.resolve(id, &path, 0), &path);
        }
    }
    edges
}

/// The cycles among files: each strongly connected component of more than
/// one file, as one circle through it with the path of each edge.
fn cycles(edges: &Edges) -> Vec<String> {
    let nodes: BTreeSet<&PathBuf> = edges
        .keys()
        .chain(edges.values().flat_map(|e| e.keys()))
        .collect();
    let reach = |from: &PathBuf| -> BTreeSet<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in edges.get(&n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut reported: BTreeSet<PathBuf> = BTreeSet::new();
    let mut out = Vec::new();
    for &node in &nodes {
        if reported.contains(node) || !reach(node).contains(node) {
            continue;
        }
        // The shortest circle back to `node`, by breadth-first search.
        let mut prev: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([node.clone()]);
        'search: while let Some(n) = queue.pop_front() {
            for next in edges.get(&n).into_iter().flat_map(|e| e.keys()) {
                if next == node {
                    prev.insert(node.clone(), n.clone());
                    break 'search;
                }
                if !prev.contains_key(next) {
                    prev.insert(next.clone(), n.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        let mut circle = vec![node.clone()];
        let mut at = prev[node].clone();
        while &at != node {
            circle.push(at.clone());
            at = prev[&at].clone();
        }
        circle.reverse();
        circle.insert(0, node.clone());
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| {
                format!(
                    "  {} uses {} (`{}`)",
                    w[0].display(),
                    w[1].display(),
                    edges[&w[0]][&w[1]]
                )
            })
            .collect();
        let component: BTreeSet<PathBuf> = reach(node)
            .into_iter()
            .filter(|n| reach(n).contains(node))
            .collect();
        reported.extend(component);
        out.push(steps.join("\n"));
    }
    out
}

fn workspace_edges() -> Edges {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tree = Tree::default();
    for root in ["src/lib.rs", "src/main.rs", "actors/src/lib.rs"] {
        let file = base.join(root);
        let dir = file.parent().unwrap().to_path_buf();
        tree.load_file(&file, None, dir);
    }
    edges(&tree, base)
}

#[test]
fn no_two_source_files_depend_on_each_other_around_a_circle() {
    let found = cycles(&workspace_edges());
    assert!(
        found.is_empty(),
        "import cycles between files:\n{}",
        found.join("\n\n")
    );
}

/// The reading finds the edges it must, so that an empty list of cycles
/// means something: a pass names the run's context, the job's folder names
/// a pass's resumable files, a re-export is followed to the defining file.
#[test]
fn the_reading_finds_known_dependencies() {
    let edges = workspace_edges();
    let has = |from: &str, to: &str| {
        edges
            .get(Path::new(from))
            .is_some_and(|e| e.contains_key(Path::new(to)))
    };
    assert!(has("src/jobs/dedup/resume.rs", "src/jobs/pass.rs"));
    assert!(has("src/jobs/mod.rs", "src/jobs/dedup/resume.rs"));
    assert!(has("src/main.rs", "src/cli.rs"));
    assert!(
        !has("src/jobs/mod.rs", "src/jobs/pass.rs"),
        "a re-export of a child is a facade"
    );
}

/// A circle of two files is found and named.
#[test]
fn a_circle_is_reported_with_its_paths() {
    let mut edges = Edges::new();
    let a = PathBuf::from("a.rs");
    let b = PathBuf::from("b.rs");
    edges
        .entry(a.clone())
        .or_default()
        .insert(b.clone(), "crate::b::B".into());
    edges
        .entry(b.clone())
        .or_default()
        .insert(a.clone(), "crate::a::A".into());
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("crate::b::B") && found[0].contains("crate::a::A"),
        "{}",
        found[0]
    );
}
