//! Records a pg_query tree into the arena of `tree.rs` through its
//! `serde::Serialize` impl: a serde `Serializer` that visits every field of
//! every message. Every serde shape maps onto the arena, so nothing can be
//! skipped silently.

use serde::Serialize;
use serde::ser;

use super::tree::{Item, Tree, Val};

/// Flattens any serializable pg_query value.
pub(super) fn flatten<T: Serialize + ?Sized>(value: &T) -> Tree {
    let mut b = Builder {
        tree: Tree {
            items: Vec::with_capacity(64),
            text: String::with_capacity(64),
        },
        key: "",
    };
    // Serializing into memory cannot fail: every method returns Ok.
    let _ = value.serialize(&mut b);
    b.tree
}

struct Builder {
    tree: Tree,
    /// Key for the next value pushed.
    key: &'static str,
}

impl Builder {
    fn leaf(&mut self, val: Val) {
        let end = self.tree.items.len() as u32 + 1;
        self.tree.items.push(Item {
            key: self.key,
            val,
            end,
        });
    }

    fn open(&mut self, val: Val) -> usize {
        let at = self.tree.items.len();
        self.tree.items.push(Item {
            key: self.key,
            val,
            end: 0,
        });
        at
    }

    fn close(&mut self, at: usize) {
        self.tree.items[at].end = self.tree.items.len() as u32;
    }
}

#[derive(Debug)]
pub(crate) struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tree builder error")
    }
}
impl std::error::Error for Never {}
impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Never
    }
}

/// Open list or message; `at` is None for the transparent `Node` wrapper.
pub(crate) struct Compound<'b> {
    b: &'b mut Builder,
    at: Option<usize>,
    /// Key of the wrapper itself, handed down through a transparent wrapper.
    outer: &'static str,
    seq: bool,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.b.key = "";
        v.serialize(&mut *self.b)
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), Never> {
        self.b.key = if self.at.is_some() { key } else { self.outer };
        v.serialize(&mut *self.b)
    }
    fn finish(self) -> Result<(), Never> {
        if let Some(at) = self.at {
            // An empty list is recorded as absent, like any default.
            if self.seq && self.b.tree.items.len() == at + 1 {
                self.b.tree.items.pop();
            } else {
                self.b.close(at);
            }
        }
        Ok(())
    }
}

impl<'b> ser::Serializer for &'b mut Builder {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Compound<'b>;
    type SerializeTuple = Compound<'b>;
    type SerializeTupleStruct = Compound<'b>;
    type SerializeTupleVariant = Compound<'b>;
    type SerializeMap = Compound<'b>;
    type SerializeStruct = Compound<'b>;
    type SerializeStructVariant = Compound<'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Never> {
        if v {
            self.leaf(Val::Int(1));
        }
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Never> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Never> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Never> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Never> {
        if v != 0 {
            self.leaf(Val::Int(v));
        }
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Never> {
        self.serialize_i64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Never> {
        self.serialize_i64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Never> {
        self.serialize_i64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Never> {
        self.serialize_i64(v as i64)
    }
    // Costs and row estimates only: nothing to check in them.
    fn serialize_f32(self, _: f32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Never> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Never> {
        if !v.is_empty() {
            let start = self.tree.text.len() as u32;
            self.tree.text.push_str(v);
            self.leaf(Val::Str(start, v.len() as u32));
        }
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Never> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        v.serialize(self)
    }
    // The `node::Node` and `a_const::Val` oneofs: the variant's payload is a
    // message whose own type name says what it is, so the enum is transparent.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'b>, Never> {
        let at = self.open(Val::Seq);
        Ok(Compound {
            b: self,
            at: Some(at),
            outer: "",
            seq: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'b>, Never> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'b>, Never> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'b>, Never> {
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'b>, Never> {
        self.serialize_seq(len)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'b>, Never> {
        // `Node` only wraps the oneof: make it transparent so a field holding
        // a Node points straight at the RangeVar/FuncCall/... inside.
        if name == "Node" {
            let outer = self.key;
            return Ok(Compound {
                b: self,
                at: None,
                outer,
                seq: false,
            });
        }
        let at = self.open(Val::Struct(name));
        Ok(Compound {
            b: self,
            at: Some(at),
            outer: "",
            seq: false,
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'b>, Never> {
        self.serialize_struct(name, len)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.element(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.element(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.element(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.element(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Never> {
        self.element(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        self.element(v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        self.field(key, v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        self.field(key, v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}
