//! A generic, read-only view of a pg_query parse tree.
//!
//! pg_query's protobuf types all derive `serde::Serialize`, so serializing a
//! tree visits *every* field of *every* node, whatever its type. We record
//! that visit in a flat pre-order arena. The walker then sees every node
//! generically: a node kind added by a future pg_query cannot hide a
//! qualified name from it, because nothing here lists node kinds.
//!
//! Defaults (empty strings, zero numbers, `false`, `None`, empty lists) are
//! not recorded: accessors return the default for a missing field, which
//! keeps the arena small (a pgbench SELECT is about 25 items).

use serde::Serialize;

/// One recorded value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Val {
    /// A protobuf message, by its Rust type name (`RangeVar`, `AConst`, ...).
    Struct(&'static str),
    /// A repeated field.
    Seq,
    /// A string, as a byte range of `Tree::text`.
    Str(u32, u32),
    /// Any integer, enum or bool (`true` = 1).
    Int(i64),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Item {
    /// Field name in the parent message; "" for list elements.
    pub(super) key: &'static str,
    pub(super) val: Val,
    /// Index one past this item's subtree.
    pub(super) end: u32,
}

/// The flattened tree.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub(super) items: Vec<Item>,
    pub(super) text: String,
}

impl Tree {
    /// Flattens any pg_query protobuf value.
    pub(crate) fn build<T: Serialize + ?Sized>(value: &T) -> Tree {
        super::flatten::flatten(value)
    }

    /// The first recorded item (the value passed to `build`).
    pub(crate) fn root(&self) -> Option<N<'_>> {
        (!self.items.is_empty()).then_some(N { t: self, i: 0 })
    }
}

/// A node of the tree (a cheap copyable cursor).
#[derive(Clone, Copy)]
pub(crate) struct N<'t> {
    t: &'t Tree,
    i: u32,
}

impl<'t> N<'t> {
    fn item(&self) -> &'t Item {
        &self.t.items[self.i as usize]
    }

    /// Message type name, or "" when this is not a message.
    pub(crate) fn kind(&self) -> &'static str {
        match self.item().val {
            Val::Struct(k) => k,
            _ => "",
        }
    }

    /// Field name under which this value sits in its parent message.
    pub(crate) fn key(&self) -> &'static str {
        self.item().key
    }

    pub(crate) fn is_seq(&self) -> bool {
        matches!(self.item().val, Val::Seq)
    }

    /// Direct children (fields of a message, elements of a list).
    pub(crate) fn children(&self) -> Children<'t> {
        let item = self.item();
        let next = match item.val {
            Val::Struct(_) | Val::Seq => self.i + 1,
            _ => item.end,
        };
        Children {
            t: self.t,
            next,
            end: item.end,
        }
    }

    /// A field of this message.
    pub(crate) fn get(&self, field: &str) -> Option<N<'t>> {
        self.children().find(|c| c.key() == field)
    }

    /// This value as a string ("" when it is not one).
    pub(crate) fn as_str(&self) -> &'t str {
        match self.item().val {
            Val::Str(s, l) => &self.t.text[s as usize..(s + l) as usize],
            _ => "",
        }
    }

    /// This value as an integer (0 when it is not one).
    pub(crate) fn as_int(&self) -> i64 {
        match self.item().val {
            Val::Int(v) => v,
            _ => 0,
        }
    }

    /// A string field ("" when absent).
    pub(crate) fn str(&self, field: &str) -> &'t str {
        self.get(field).map_or("", |n| n.as_str())
    }

    /// An integer, enum or bool field (0 when absent).
    pub(crate) fn int(&self, field: &str) -> i64 {
        self.get(field).map_or(0, |n| n.as_int())
    }

    pub(crate) fn flag(&self, field: &str) -> bool {
        self.int(field) != 0
    }

    /// The elements of a repeated field (none when absent).
    pub(crate) fn list(&self, field: &str) -> Children<'t> {
        match self.get(field) {
            Some(n) if n.is_seq() => n.children(),
            _ => Children {
                t: self.t,
                next: 0,
                end: 0,
            },
        }
    }

    /// `sval` of a `String` node; None for any other node.
    pub(crate) fn string_node(&self) -> Option<&'t str> {
        (self.kind() == "String").then(|| self.str("sval"))
    }
}

pub(crate) struct Children<'t> {
    t: &'t Tree,
    next: u32,
    end: u32,
}

impl<'t> Iterator for Children<'t> {
    type Item = N<'t>;
    fn next(&mut self) -> Option<N<'t>> {
        if self.next >= self.end {
            return None;
        }
        let n = N {
            t: self.t,
            i: self.next,
        };
        self.next = self.t.items[self.next as usize].end;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(sql: &str) -> Tree {
        Tree::build(&pg_query::parse(sql, 0).unwrap().protobuf)
    }

    #[test]
    fn range_var_fields_are_reachable() {
        let t = tree("SELECT * FROM \"Tenant_B\".t AS x");
        let root = t.root().unwrap();
        assert_eq!(root.kind(), "ParseResult");
        let raw = root.list("stmts").next().unwrap();
        assert_eq!(raw.kind(), "RawStmt");
        let sel = raw.get("stmt").unwrap();
        assert_eq!(sel.kind(), "SelectStmt");
        let rv = sel.list("from_clause").next().unwrap();
        assert_eq!(rv.kind(), "RangeVar");
        assert_eq!(rv.str("schemaname"), "Tenant_B");
        assert_eq!(rv.str("relname"), "t");
        assert_eq!(rv.get("alias").unwrap().str("aliasname"), "x");
        // Defaults are absent but read as defaults.
        assert_eq!(rv.str("catalogname"), "");
        assert!(rv.flag("inh"));
    }

    #[test]
    fn a_const_string_is_under_val() {
        let t = tree("SELECT 'a.b'::regclass");
        let root = t.root().unwrap();
        let sel = root.list("stmts").next().unwrap().get("stmt").unwrap();
        let rt = sel.list("target_list").next().unwrap();
        let cast = rt.get("val").unwrap();
        assert_eq!(cast.kind(), "TypeCast");
        let c = cast.get("arg").unwrap();
        assert_eq!(c.kind(), "AConst");
        assert_eq!(c.get("val").unwrap().string_node(), Some("a.b"));
        let names: Vec<_> = cast
            .get("type_name")
            .unwrap()
            .list("names")
            .filter_map(|n| n.string_node())
            .collect();
        assert_eq!(names, ["regclass"]);
    }

    #[test]
    fn empty_lists_are_absent_and_subtrees_skip_correctly() {
        let t = tree("SELECT 1; SELECT 2");
        let root = t.root().unwrap();
        assert_eq!(root.list("stmts").count(), 2);
        let sel = root.list("stmts").next().unwrap().get("stmt").unwrap();
        assert!(sel.get("from_clause").is_none());
        assert_eq!(sel.list("from_clause").count(), 0);
    }
}
