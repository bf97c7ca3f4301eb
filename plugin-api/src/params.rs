//! Helpers for reading `[backend.params]`: the "one value or a list" form users expect
//! (`sni = "a.example"` as well as `sni = ["a.example", "b.example"]`), with error messages that
//! name the param.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// Reads a string or a list of strings. `name` is the param's name and `expecting` says what it
/// takes, both for error messages. Use from a `#[serde(deserialize_with = "...")]` function:
///
/// ```
/// # use serde::Deserializer;
/// fn sni_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
///     pmmux_plugin_api::params::string_or_list(d, "sni", "`sni`: a host name or a list of host names").map(Some)
/// }
/// ```
pub fn string_or_list<'de, D: Deserializer<'de>>(
    d: D,
    name: &'static str,
    expecting: &'static str,
) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringOrList { name, expecting })
}

struct StringOrList {
    name: &'static str,
    expecting: &'static str,
}

impl<'de> Visitor<'de> for StringOrList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(vec![value.to_owned()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        let name = self.name;
        let in_list = |e: A::Error| de::Error::custom(format_args!("in the `{name}` list: {e}"));
        while let Some(item) = seq.next_element::<String>().map_err(in_list)? {
            list.push(item);
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct P {
        #[serde(deserialize_with = "names")]
        name: Vec<String>,
    }

    fn names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        super::string_or_list(d, "name", "`name`: a name or a list of names")
    }

    #[test]
    fn one_or_many_with_named_errors() {
        let one: P = toml::from_str("name = \"a\"").unwrap();
        assert_eq!(one.name, ["a"]);
        let many: P = toml::from_str("name = [\"a\", \"b\"]").unwrap();
        assert_eq!(many.name, ["a", "b"]);
        let bad = toml::from_str::<P>("name = 5").unwrap_err().to_string();
        assert!(bad.contains("`name`: a name or a list of names"), "{bad}");
        let bad_item = toml::from_str::<P>("name = [\"a\", 5]").unwrap_err().to_string();
        assert!(bad_item.contains("in the `name` list"), "{bad_item}");
    }
}
