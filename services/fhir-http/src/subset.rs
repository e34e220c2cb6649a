//! `_summary` and `_elements` (<https://hl7.org/fhir/R4B/search.html#summary>): the part of
//! each resource a client asks for. Only a request that asks pays for it — the resource is
//! parsed, cut and written again — while every other answer is the stored text as it is.
//!
//! Which elements are summary elements, and which are mandatory, is FHIR's own
//! StructureDefinitions' `isSummary` and `min`, kept in `data/elements.tsv` (generated once by
//! `data/elements.py`, which says where it came from): fhir-sdk's models do not carry them.

use hospital_core::{Error, codes};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The tag FHIR asks a server to put on a resource it returns incomplete, so that nobody
/// writes it back over the whole one.
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// What part of each resource to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subset {
    /// The whole resource (no `_summary`, `_summary=false`, or `_summary=count`, which the
    /// search answers with a total and no resources).
    Whole,
    /// `_summary=true`: the elements marked isSummary, at every level the resource defines.
    Summary,
    /// `_summary=text`: `text`, `id`, `meta` and the mandatory top-level elements.
    Text,
    /// `_summary=data`: everything but `text`.
    Data,
    /// `_elements`: these top-level elements, with `id`, `meta` and the mandatory ones (FHIR:
    /// servers SHOULD return mandatory elements whether they are asked for or not).
    Elements(Vec<String>),
}

/// One element of a resource or backbone element, as its StructureDefinition gives it.
#[derive(Debug)]
struct Element {
    /// The name, `value[x]` for a choice.
    name: &'static str,
    summary: bool,
    mandatory: bool,
}

impl Element {
    /// Whether the JSON key `key` (`valueQuantity`, `_birthDate`) is this element.
    fn is(&self, key: &str) -> bool {
        let key = key.strip_prefix('_').unwrap_or(key);
        match self.name.strip_suffix("[x]") {
            Some(stem) => key
                .strip_prefix(stem)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
            None => self.name == key,
        }
    }
}

/// A resource type or backbone element: its elements, or the definition it reuses.
#[derive(Debug)]
enum Definition {
    Elements(Vec<Element>),
    SameAs(&'static str),
}

/// Every definition by path (`Patient`, `Patient.contact`), read once from the data file.
static DEFINITIONS: LazyLock<HashMap<&'static str, Definition>> = LazyLock::new(|| {
    include_str!("../data/elements.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(path, rest)| {
            let def = match rest.strip_prefix('=') {
                Some(target) => Definition::SameAs(target),
                None => Definition::Elements(
                    rest.split(' ')
                        .map(|e| {
                            let mandatory = e.ends_with('!');
                            let e = e.trim_end_matches('!');
                            let summary = e.ends_with('*');
                            Element {
                                name: e.trim_end_matches('*'),
                                summary,
                                mandatory,
                            }
                        })
                        .collect(),
                ),
            };
            (path, def)
        })
        .collect()
});

/// The elements defined at `path`, following reused definitions; `None` for a data type.
fn elements_at(path: &str) -> Option<&'static [Element]> {
    let mut path = path;
    // A reused definition names one with elements; the bound only guards the data file.
    for _ in 0..4 {
        match DEFINITIONS.get(path)? {
            Definition::Elements(e) => return Some(e),
            Definition::SameAs(target) => path = target,
        }
    }
    None
}

fn bad(message: String) -> Error {
    Error::new(codes::INVALID_SEARCH, message)
}

impl Subset {
    /// The subset `params` ask for, for resources of `types`. An element `_elements` names
    /// must be an element of one of them; `_summary=count` is a search's alone.
    pub(crate) fn from_query(
        params: &[(String, String)],
        types: &[&str],
        search: bool,
    ) -> Result<Subset, Error> {
        let mut summary = None;
        let mut elements = None;
        for (k, v) in params {
            let slot = match k.as_str() {
                "_summary" => &mut summary,
                "_elements" => &mut elements,
                _ => continue,
            };
            if slot.replace(v.as_str()).is_some() {
                return Err(bad(format!("{k} is given twice")));
            }
        }
        match (summary, elements) {
            (Some(_), Some(_)) => Err(bad(
                "_summary and _elements ask for two different subsets; give one".into(),
            )),
            (None, None) | (Some("false"), None) => Ok(Subset::Whole),
            (Some("count"), None) if search => Ok(Subset::Whole),
            (Some("count"), None) => Err(bad("_summary=count is for searches".into())),
            (Some("true"), None) => Ok(Subset::Summary),
            (Some("text"), None) => Ok(Subset::Text),
            (Some("data"), None) => Ok(Subset::Data),
            (Some(v), None) => Err(bad(format!(
                "_summary={v} is not one of true, text, data, count, false"
            ))),
            (None, Some(list)) => {
                let mut names = Vec::new();
                for name in list.split(',').map(str::trim) {
                    let known = types.iter().any(|t| {
                        elements_at(t).is_some_and(|es| {
                            es.iter().any(|e| {
                                e.is(name)
                                    || e.name == name
                                    || e.name.strip_suffix("[x]") == Some(name)
                            })
                        })
                    });
                    if name.is_empty() || name.contains('.') || !known {
                        return Err(bad(format!(
                            "_elements names `{name}`, which is not a top-level element of {}",
                            types.join(" or ")
                        )));
                    }
                    names.push(name.to_owned());
                }
                Ok(Subset::Elements(names))
            }
        }
    }

    pub(crate) fn is_whole(&self) -> bool {
        *self == Subset::Whole
    }

    /// The stored JSON text as asked for: as it is when whole, else cut and tagged SUBSETTED.
    pub(crate) fn apply(&self, stored: &str) -> Result<String, Error> {
        if self.is_whole() {
            return Ok(stored.to_owned());
        }
        let mut resource: Value = serde_json::from_str(stored)
            .map_err(|e| Error::internal(format!("stored body unreadable: {e}")))?;
        let rtype = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Value::Object(top) = &mut resource {
            let defined = elements_at(&rtype).unwrap_or_default();
            let keep = |key: &str, e: Option<&Element>| -> bool {
                if matches!(key, "resourceType" | "id" | "meta") {
                    return true;
                }
                let mandatory = e.is_some_and(|e| e.mandatory);
                match self {
                    Subset::Whole | Subset::Summary => true,
                    Subset::Text => key == "text" || mandatory,
                    Subset::Data => key != "text",
                    Subset::Elements(names) => {
                        mandatory
                            || names.iter().any(|n| {
                                n == key.strip_prefix('_').unwrap_or(key)
                                    || e.is_some_and(|e| e.name.strip_suffix("[x]") == Some(n))
                            })
                    }
                }
            };
            top.retain(|k, _| keep(k, defined.iter().find(|e| e.is(k))));
            if *self == Subset::Summary {
                summarise(top, &rtype, true);
            }
            tag_subsetted(top);
        }
        Ok(resource.to_string())
    }
}

/// Keeps the summary elements of `object`, defined at `path`, and of the backbone elements
/// within it. Data types keep all their elements but Attachment's `data` (FHIR: "other than
/// Attachment.data, all data type properties are included in the summary form").
fn summarise(object: &mut Map<String, Value>, path: &str, top: bool) {
    let Some(defined) = elements_at(path) else {
        return;
    };
    object.retain(|k, _| {
        (top && matches!(k.as_str(), "resourceType" | "id" | "meta"))
            || defined.iter().any(|e| e.summary && e.is(k))
    });
    for (k, v) in object.iter_mut() {
        let Some(e) = defined.iter().find(|e| e.is(k)) else {
            continue;
        };
        let child = format!("{path}.{}", e.name);
        if elements_at(&child).is_none() {
            continue;
        }
        let items: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            other => vec![other],
        };
        for item in items {
            if let Value::Object(o) = item {
                summarise(o, &child, false);
            }
        }
    }
}

fn tag_subsetted(top: &mut Map<String, Value>) {
    let meta = top
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let tags = meta
            .entry("tag")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(tags) = tags
            && !tags
                .iter()
                .any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == "SUBSETTED")
        {
            tags.push(serde_json::json!({
                "system": SUBSETTED_SYSTEM,
                "code": "SUBSETTED",
                "display": "Resource encoded in summary mode"
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_resource_type_the_server_accepts_has_its_elements_in_the_table() {
        for t in hospital_fhir_model::SUPPORTED_TYPES {
            let e = elements_at(t).unwrap_or_else(|| panic!("{t} is not in elements.tsv"));
            assert!(e.iter().any(|e| e.name == "id" && e.summary), "{t}");
        }
    }

    #[test]
    fn a_summary_keeps_summary_elements_and_drops_attachment_data() {
        let patient = json!({"resourceType": "Patient", "id": "p", "text": {"status": "generated"},
            "name": [{"family": "Nguyễn"}], "birthDate": "1985-03-12", "_birthDate": {"id": "b"},
            "maritalStatus": {"text": "M"}, "deceasedBoolean": false,
            "photo": [{"contentType": "image/png", "data": "AAAA"}],
            "contact": [{"name": {"family": "Trần"}}],
            "link": [{"other": {"reference": "Patient/q"}, "type": "seealso", "extension": []}]});
        let out: Value =
            serde_json::from_str(&Subset::Summary.apply(&patient.to_string()).unwrap()).unwrap();
        for kept in [
            "id",
            "name",
            "birthDate",
            "_birthDate",
            "deceasedBoolean",
            "link",
        ] {
            assert!(out.get(kept).is_some(), "{kept}: {out}");
        }
        for dropped in ["text", "maritalStatus", "photo", "contact"] {
            assert!(out.get(dropped).is_none(), "{dropped}: {out}");
        }
        assert!(
            out["link"][0].get("extension").is_none(),
            "a backbone keeps its summary elements only"
        );
        assert_eq!(out["meta"]["tag"][0]["code"], "SUBSETTED");
        let doc = json!({"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0=", "size": 5}}]});
        let out: Value =
            serde_json::from_str(&Subset::Summary.apply(&doc.to_string()).unwrap()).unwrap();
        assert_eq!(
            out["content"][0]["attachment"],
            json!({"contentType": "application/pdf", "size": 5})
        );
    }

    #[test]
    fn elements_keep_what_is_named_with_id_meta_and_mandatory_elements() {
        let s = Subset::from_query(
            &params(&[("_elements", "value,subject")]),
            &["Observation"],
            true,
        )
        .unwrap();
        let obs = json!({"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "Mạch"}, "subject": {"reference": "Patient/p"},
            "valueQuantity": {"value": 72}, "note": [{"text": "x"}], "text": {"status": "generated"}});
        let out: Value = serde_json::from_str(&s.apply(&obs.to_string()).unwrap()).unwrap();
        let mut keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "code",
                "id",
                "meta",
                "resourceType",
                "status",
                "subject",
                "valueQuantity"
            ]
        );
        let text = Subset::Text.apply(&obs.to_string()).unwrap();
        assert!(text.contains("\"text\"") && !text.contains("valueQuantity"));
        let data = Subset::Data.apply(&obs.to_string()).unwrap();
        assert!(!data.contains("generated") && data.contains("valueQuantity"));
    }

    #[test]
    fn unknown_elements_mixed_subsets_and_bad_summaries_are_refused() {
        for q in [
            vec![("_elements", "nothing")],
            vec![("_elements", "name.family")],
            vec![("_elements", "name,")],
            vec![("_summary", "true"), ("_elements", "name")],
            vec![("_summary", "maybe")],
            vec![("_summary", "true"), ("_summary", "data")],
        ] {
            let e = Subset::from_query(&params(&q), &["Patient"], true).unwrap_err();
            assert_eq!(e.code.id, "IR_03", "{q:?}");
        }
        assert!(
            Subset::from_query(&params(&[("_summary", "count")]), &["Patient"], false).is_err()
        );
        assert_eq!(
            Subset::from_query(&params(&[("_summary", "count")]), &["Patient"], true).unwrap(),
            Subset::Whole
        );
    }
}
