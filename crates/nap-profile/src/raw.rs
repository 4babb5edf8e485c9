//! The profile as YAML hands it over: top-level entries with their places in
//! the text, before any key or value is judged.
//!
//! Reading into our own [`Raw`] (rather than a derived struct) lets us keep
//! every key, duplicates included, with the line and column of both key and
//! value, and the exact bytes each scalar was written as, so that messages
//! can quote `'1.5'` as written and [`crate::replace_command`] can rewrite a
//! value in place.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Location, MessageFormatter, Spanned};

use crate::MAX_PROFILE_BYTES;
use crate::error::{Position, ProfileError, ProfileErrorKind, quote_found};

/// How deeply lists and mappings may nest. A profile needs one level.
const MAX_DEPTH: usize = 16;

/// A YAML node, reduced to what judging a profile needs.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List,
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl Raw {
    /// How an error message names a node that is not the scalar it wanted.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Raw::Null => "nothing",
            Raw::Bool(_) => "a boolean",
            Raw::Int(_) | Raw::Float(_) => "a number",
            Raw::Str(_) => "a string",
            Raw::List => "a list",
            Raw::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any YAML node")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Raw, E> {
        Ok(Raw::Int(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Raw, E> {
        Ok(Raw::Int(value.into()))
    }

    fn visit_i128<E>(self, value: i128) -> Result<Raw, E> {
        Ok(Raw::Int(value))
    }

    fn visit_u128<E>(self, value: u128) -> Result<Raw, E> {
        // Only the text matters for anything this large; saturate.
        Ok(Raw::Int(i128::try_from(value).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Raw, E> {
        Ok(Raw::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Raw, E> {
        Ok(Raw::Str(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Raw, E> {
        Ok(Raw::Str(value))
    }

    fn visit_bytes<E>(self, _value: &[u8]) -> Result<Raw, E> {
        // `!!binary`: not a string anyone should put in a profile.
        Ok(Raw::List)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::List)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Raw>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

/// One node of the document with where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) raw: Raw,
    /// Where the node is used (for an alias, the `*name`).
    pub(crate) at: Position,
    /// The byte range of the node where it is used. For a list or mapping
    /// only its first token; for a block scalar its content lines, not the
    /// `|` header; for an empty value an empty range.
    pub(crate) bytes: Option<(usize, usize)>,
    /// The scalar exactly as written where it is defined (for an alias, the
    /// anchored node), quotes included.
    pub(crate) written: Option<String>,
}

impl Node {
    fn new(text: &str, spanned: Spanned<Raw>) -> Node {
        let bytes = byte_range(&spanned.referenced);
        let written = byte_range(&spanned.defined)
            .and_then(|(start, end)| text.get(start..end))
            .map(str::to_owned);
        Node {
            raw: spanned.value,
            at: position(&spanned.referenced),
            bytes,
            written,
        }
    }

    /// The text of a scalar: a string's value, or any other scalar exactly as
    /// written (`1.5`, `0x10`, `true`). `None` for null, lists and mappings.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.raw {
            Raw::Str(value) => Some(value.clone()),
            Raw::Bool(_) | Raw::Int(_) | Raw::Float(_) => {
                Some(self.written.clone().unwrap_or_else(|| match &self.raw {
                    Raw::Bool(value) => value.to_string(),
                    Raw::Int(value) => value.to_string(),
                    Raw::Float(value) => value.to_string(),
                    _ => String::new(),
                }))
            }
            Raw::Null | Raw::List | Raw::Map(_) => None,
        }
    }

    /// What an error message says was found: the scalar quoted, or `a list`.
    pub(crate) fn found(&self) -> String {
        match self.scalar_text() {
            Some(text) if text.is_empty() => "an empty string".to_owned(),
            Some(text) => quote_found(&text),
            None => self.raw.describe().to_owned(),
        }
    }
}

/// One top-level `key: value`.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: Node,
    pub(crate) value: Node,
}

impl Entry {
    /// The key's name as written, for matching and messages; `None` when
    /// the key is a list or mapping.
    pub(crate) fn key_name(&self) -> Option<String> {
        match &self.key.raw {
            Raw::Null => Some(self.key.written.clone().unwrap_or_default()),
            _ => self.key.scalar_text(),
        }
    }
}

/// Reads the top level of a profile: `Ok(None)` when the document is empty
/// (nothing, only comments, or `null`), the entries in file order when it is
/// a mapping, and an error for malformed YAML or any other top level.
pub(crate) fn read_entries(file: &str, text: &str) -> Result<Option<Vec<Entry>>, ProfileError> {
    if text.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::new(
            file,
            Position::START,
            ProfileErrorKind::TooLarge { bytes: text.len() },
        ));
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_PROFILE_BYTES),
            max_events: 50_000,
            max_aliases: 100,
            max_anchors: 100,
            max_depth: MAX_DEPTH,
            // Two, so a second document is reported as such by the
            // deserializer rather than as a budget breach.
            max_documents: 2,
            max_nodes: 10_000,
            max_total_scalar_bytes: MAX_PROFILE_BYTES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: MAX_DEPTH,
        },
        // We judge duplicates ourselves, to say where the first one was.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        // `<<` would splice values in from elsewhere; a profile is three lines.
        merge_keys: serde_saphyr::MergeKeyPolicy::Error,
        with_snippet: false,
    };
    let top: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|error| yaml_error(file, &error))?;
    let top_at = position(&top.referenced);
    match top.value {
        Raw::Null => Ok(None),
        Raw::Map(entries) => Ok(Some(
            entries
                .into_iter()
                .map(|(key, value)| Entry {
                    key: Node::new(text, key),
                    value: Node::new(text, value),
                })
                .collect(),
        )),
        other => {
            let node = Node::new(text, Spanned::new(other, top.referenced, top.defined));
            Err(ProfileError::new(
                file,
                top_at,
                ProfileErrorKind::NotAMapping {
                    found: match &node.raw {
                        Raw::List => "a list".to_owned(),
                        _ => format!("the single value {}", node.found()),
                    },
                },
            ))
        }
    }
}

/// Turns serde-saphyr's error into ours: its message on one line, at its location.
fn yaml_error(file: &str, error: &serde_saphyr::Error) -> ProfileError {
    let error = error.without_snippet();
    let at = error
        .location()
        .map(|location| position(&location))
        .unwrap_or(Position::START);
    let kind = match error {
        serde_saphyr::Error::MultipleDocuments { .. } => ProfileErrorKind::Malformed {
            message: "a profile is one YAML document, found a second one".to_owned(),
        },
        serde_saphyr::Error::Budget { breach, .. } => ProfileErrorKind::TooComplex {
            message: match breach {
                BudgetBreach::Depth { .. } => {
                    format!("lists and mappings nest deeper than {MAX_DEPTH} levels")
                }
                BudgetBreach::Aliases { .. }
                | BudgetBreach::Anchors { .. }
                | BudgetBreach::AliasAnchorRatio { .. }
                | BudgetBreach::RecordedAnchorEvents { .. }
                | BudgetBreach::RecordedAnchorBytes { .. } => {
                    "too many anchors or aliases".to_owned()
                }
                _ => "too many values".to_owned(),
            },
        },
        _ => {
            let message = serde_saphyr::DefaultMessageFormatter.format_message(error);
            if message.contains("alias replay limit") {
                ProfileErrorKind::TooComplex {
                    message: "aliases expand to too many values".to_owned(),
                }
            } else {
                ProfileErrorKind::Malformed {
                    message: one_line(&message),
                }
            }
        }
    };
    ProfileError::new(file, at, kind)
}

/// Collapses whitespace runs (line breaks included) into single spaces and
/// escapes other control characters.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    out
}

fn position(location: &Location) -> Position {
    // A location saphyr does not know is 0:0; every error of ours needs a
    // real place, and the start of the file is the honest fallback.
    if location.line() == 0 {
        return Position::START;
    }
    Position {
        line: u32::try_from(location.line()).unwrap_or(u32::MAX),
        column: u32::try_from(location.column().max(1)).unwrap_or(u32::MAX),
    }
}

fn byte_range(location: &Location) -> Option<(usize, usize)> {
    if location.line() == 0 {
        return None;
    }
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    Some((start, start.checked_add(len)?))
}
