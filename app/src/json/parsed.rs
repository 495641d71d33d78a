//! Reads what the browser's `JSON.parse` made into Rust types. It reads each value as the kind
//! the type asks for (a struct from an object, a `Vec` from an array) and nothing else: JSON
//! holds six kinds of value, and a reader of JavaScript values in general (`Map`s, iterables,
//! structs from arrays) brings a second reader into every type's `Deserialize`, which the page
//! would carry for values `JSON.parse` never makes.

use std::fmt;

use js_sys::{Array, JsString, Object, Reflect};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use wasm_bindgen::{JsCast, JsValue};

/// Why a value could not be read.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Parses JSON text with the browser's parser and reads it as `T`.
pub fn read<T: de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    let value = js_sys::JSON::parse(text).map_err(|_| Error("not JSON".to_owned()))?;
    T::deserialize(Parsed(value))
}

/// Numbers JavaScript holds exactly as integers (±2^53 − 1), read as integers as `serde_json`
/// reads them.
const SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// One value `JSON.parse` made.
struct Parsed(JsValue);

/// Not generic, so that one copy serves every type's reader.
fn wrong(found: &JsValue, wanted: &str) -> Error {
    let found = if found.is_null() {
        "null"
    } else if found.as_bool().is_some() {
        "a boolean"
    } else if found.as_f64().is_some() {
        "a number"
    } else if found.is_string() {
        "a string"
    } else if Array::is_array(found) {
        "an array"
    } else {
        "an object"
    };
    Error(format!("expected {wanted}, found {found}"))
}

impl Parsed {
    fn number(&self) -> Result<f64, Error> {
        self.0.as_f64().ok_or_else(|| wrong(&self.0, "a number"))
    }

    fn string(self) -> Result<String, Error> {
        self.0.as_string().ok_or_else(|| wrong(&self.0, "a string"))
    }

    fn array(self) -> Result<Items, Error> {
        match self.0.dyn_into::<Array>() {
            Ok(array) => Ok(Items {
                len: array.length(),
                array,
                next: 0,
            }),
            Err(other) => Err(wrong(&other, "an array")),
        }
    }

    fn object(self) -> Result<Entries, Error> {
        if !self.0.is_object() || Array::is_array(&self.0) {
            return Err(wrong(&self.0, "an object"));
        }
        let keys = Object::keys(self.0.unchecked_ref::<Object>());
        Ok(Entries {
            object: self.0,
            len: keys.length(),
            keys,
            next: 0,
            key: JsValue::UNDEFINED,
        })
    }
}

/// A number read as an integer where it is one, as `serde_json` reads its text.
fn visit_number<'de, V: Visitor<'de>>(n: f64, visitor: V) -> Result<V::Value, Error> {
    if n.fract() != 0.0 || n.abs() > SAFE_INTEGER {
        visitor.visit_f64(n)
    } else if n < 0.0 {
        visitor.visit_i64(n as i64)
    } else {
        visitor.visit_u64(n as u64)
    }
}

fn visit_integer<'de, V: Visitor<'de>>(value: Parsed, visitor: V) -> Result<V::Value, Error> {
    let n = value.number()?;
    if n.fract() != 0.0 || n.abs() > SAFE_INTEGER {
        return Err(wrong(&value.0, "an integer"));
    }
    visit_number(n, visitor)
}

impl<'de> de::Deserializer<'de> for Parsed {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if let Some(b) = self.0.as_bool() {
            visitor.visit_bool(b)
        } else if let Some(n) = self.0.as_f64() {
            visit_number(n, visitor)
        } else if self.0.is_string() {
            visitor.visit_string(self.string()?)
        } else if self.0.is_null() || self.0.is_undefined() {
            visitor.visit_unit()
        } else if Array::is_array(&self.0) {
            visitor.visit_seq(self.array()?)
        } else {
            visitor.visit_map(self.object()?)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(wrong(&self.0, "a boolean")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_integer(self, visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(self.number()?)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(self.number()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string()?)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string()?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string()?)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.string()?)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(self.array()?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(self.array()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_null() || self.0.is_undefined() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(self.array()?)
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(self.array()?)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(self.array()?)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(self.object()?)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(self.object()?)
    }

    /// A unit variant as its name, any other as an object of one key, as `serde_json` writes them.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if let Some(name) = self.0.as_string() {
            return visitor.visit_enum(name.into_deserializer());
        }
        let entries = self.object()?;
        if entries.len != 1 {
            return Err(Error(
                "expected an object of one key, the variant".to_owned(),
            ));
        }
        let name = entries.keys.get(0);
        let value = Reflect::get(&entries.object, &name).unwrap_or(JsValue::NULL);
        visitor.visit_enum(Variant {
            name: string_of(&name),
            value,
        })
    }
}

struct Items {
    array: Array,
    len: u32,
    next: u32,
}

impl<'de> de::SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.next == self.len {
            return Ok(None);
        }
        let item = self.array.get(self.next);
        self.next += 1;
        seed.deserialize(Parsed(item)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.len - self.next) as usize)
    }
}

struct Entries {
    object: JsValue,
    keys: Array,
    len: u32,
    next: u32,
    /// The key last read, whose value comes next.
    key: JsValue,
}

/// An object's key: `Object.keys` gives strings only.
fn string_of(key: &JsValue) -> String {
    key.unchecked_ref::<JsString>().into()
}

impl<'de> de::MapAccess<'de> for Entries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.next == self.len {
            return Ok(None);
        }
        self.key = self.keys.get(self.next);
        self.next += 1;
        seed.deserialize(string_of(&self.key).into_deserializer())
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = Reflect::get(&self.object, &self.key).unwrap_or(JsValue::NULL);
        seed.deserialize(Parsed(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.len - self.next) as usize)
    }
}

/// An enum's variant other than a unit: its name, the object's one key, and its value.
struct Variant {
    name: String,
    value: JsValue,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = Error;
    type Variant = Parsed;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Parsed), Error> {
        let name = seed.deserialize(self.name.into_deserializer())?;
        Ok((name, Parsed(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for Parsed {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(self.array()?)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(self.object()?)
    }
}
