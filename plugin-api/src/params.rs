//! Helpers for reading `[backend.params]`: the "one value or a list" form users expect
//! (`sni = "a.example"` as well as `sni = ["a.example", "b.example"]`). Errors name the param through
//! [`crate::BackendSpec::params`].

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// Reads a string or a list of strings into a `Vec<String>` or an `Option<Vec<String>>`; name it in
/// `deserialize_with` as it is, next to `default` so the param may be left out:
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Params {
///     #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
///     sni: Option<Vec<String>>,
/// }
/// let spec = pmmux_plugin_api::BackendSpec::new("web", "tls", r#"sni = "a.example""#);
/// let params: Params = spec.params().unwrap();
/// assert_eq!(params.sni, Some(vec!["a.example".to_owned()]));
/// ```
pub fn string_or_list<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<Vec<String>>,
{
    d.deserialize_any(StringOrList).map(T::from)
}

struct StringOrList;

impl<'de> Visitor<'de> for StringOrList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(vec![value.to_owned()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            list.push(item);
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use crate::BackendSpec;

    #[derive(Deserialize, Debug)]
    struct P {
        #[serde(default, deserialize_with = "super::string_or_list")]
        name: Vec<String>,
        #[serde(default, deserialize_with = "super::string_or_list")]
        other: Option<Vec<String>>,
    }

    fn parse(params: &str) -> Result<P, String> {
        BackendSpec::new("b", "x", params).params()
    }

    #[test]
    fn one_or_many_with_named_errors() {
        let one = parse("name = \"a\"").unwrap();
        assert_eq!((one.name, one.other), (vec!["a".to_owned()], None));
        let many = parse("other = [\"a\", \"b\"]").unwrap();
        assert_eq!(
            (many.name.len(), many.other),
            (0, Some(vec!["a".to_owned(), "b".to_owned()]))
        );
        let bad = parse("name = 5").unwrap_err();
        assert!(
            bad.contains("`name`: invalid type: integer `5`, expected a string or a list"),
            "{bad}"
        );
        let bad_item = parse("other = [\"a\", 5]").unwrap_err();
        assert!(bad_item.contains("`other`: invalid type: integer `5`"), "{bad_item}");
    }
}
