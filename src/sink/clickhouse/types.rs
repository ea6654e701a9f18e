//! ClickHouse column types as the server names them (`system.columns.type`), parsed into the
//! shapes the RowBinary encoder knows.

use std::fmt;

/// A column type the encoder can write, or [`ChType::Unsupported`] with the server's name.
#[derive(Debug, Clone, PartialEq)]
pub enum ChType {
    /// `Nullable(T)`: a 0/1 null flag, then T when not null.
    Nullable(Box<ChType>),
    /// `LowCardinality(T)`: written in RowBinary exactly as T.
    LowCardinality(Box<ChType>),
    /// `String`.
    String,
    /// `FixedString(N)`.
    FixedString(usize),
    /// `UInt8` … `UInt64` (bytes).
    UInt(u8),
    /// `Int8` … `Int64` (bytes).
    Int(u8),
    /// `Float32`.
    Float32,
    /// `Float64`.
    Float64,
    /// `Bool` (one byte).
    Bool,
    /// `Date`: days since 1970-01-01 as UInt16.
    Date,
    /// `Date32`: days since 1970-01-01 as Int32.
    Date32,
    /// `DateTime` / `DateTime('tz')`: seconds since the epoch as UInt32.
    DateTime,
    /// `DateTime64(p[, 'tz'])`: ticks of 10^-p seconds as Int64.
    DateTime64(u32),
    /// `UUID`.
    Uuid,
    /// `IPv4`: UInt32.
    Ipv4,
    /// `IPv6`: 16 bytes, network order.
    Ipv6,
    /// `Decimal(P, S)` (and `Decimal32/64/128(S)`): the value × 10^S as a 4/8/16-byte integer.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// `Enum8(...)` / `Enum16(...)`: the value of a named member.
    Enum {
        /// 1 or 2 bytes.
        bytes: u8,
        /// (name, value) pairs.
        members: Vec<(String, i16)>,
    },
    /// Anything else (Array, Map, Tuple, JSON, …): sluice cannot fill such a column.
    Unsupported(String),
}

impl ChType {
    /// Parses a type name as `system.columns` or `DESCRIBE TABLE` print it.
    pub fn parse(s: &str) -> ChType {
        let t = s.trim();
        let unsupported = || ChType::Unsupported(t.to_string());
        let (head, args) = match t.find('(') {
            Some(i) if t.ends_with(')') => (&t[..i], Some(&t[i + 1..t.len() - 1])),
            Some(_) => return unsupported(),
            None => (t, None),
        };
        let parts = args.map(split_args).unwrap_or_default();
        let num = |i: usize| -> Option<u32> { parts.get(i)?.trim().parse().ok() };
        match (head, args) {
            ("Nullable", Some(a)) => ChType::Nullable(Box::new(ChType::parse(a))),
            ("LowCardinality", Some(a)) => ChType::LowCardinality(Box::new(ChType::parse(a))),
            ("String", None) => ChType::String,
            ("FixedString", Some(_)) => match num(0) {
                Some(n) if n > 0 => ChType::FixedString(n as usize),
                _ => unsupported(),
            },
            ("UInt8", None) => ChType::UInt(1),
            ("UInt16", None) => ChType::UInt(2),
            ("UInt32", None) => ChType::UInt(4),
            ("UInt64", None) => ChType::UInt(8),
            ("Int8", None) => ChType::Int(1),
            ("Int16", None) => ChType::Int(2),
            ("Int32", None) => ChType::Int(4),
            ("Int64", None) => ChType::Int(8),
            ("Float32", None) => ChType::Float32,
            ("Float64", None) => ChType::Float64,
            ("Bool", None) | ("Boolean", None) => ChType::Bool,
            ("Date", None) => ChType::Date,
            ("Date32", None) => ChType::Date32,
            ("DateTime", _) => ChType::DateTime,
            ("DateTime64", Some(_)) => match num(0) {
                Some(p) if p <= 9 => ChType::DateTime64(p),
                _ => unsupported(),
            },
            ("UUID", None) => ChType::Uuid,
            ("IPv4", None) => ChType::Ipv4,
            ("IPv6", None) => ChType::Ipv6,
            ("Decimal", Some(_)) => match (num(0), num(1)) {
                (Some(p), Some(s)) if (1..=38).contains(&p) && s <= p => ChType::Decimal {
                    precision: p,
                    scale: s,
                },
                _ => unsupported(),
            },
            ("Decimal32", Some(_)) | ("Decimal64", Some(_)) | ("Decimal128", Some(_)) => {
                let precision = match head {
                    "Decimal32" => 9,
                    "Decimal64" => 18,
                    _ => 38,
                };
                match num(0) {
                    Some(s) if s <= precision => ChType::Decimal {
                        precision,
                        scale: s,
                    },
                    _ => unsupported(),
                }
            }
            ("Enum8", Some(_)) | ("Enum16", Some(_)) => {
                let mut members = Vec::new();
                for p in &parts {
                    let Some((name, value)) = p.rsplit_once('=') else {
                        return unsupported();
                    };
                    let (Some(name), Ok(value)) = (unquote(name.trim()), value.trim().parse())
                    else {
                        return unsupported();
                    };
                    members.push((name, value));
                }
                ChType::Enum {
                    bytes: if head == "Enum8" { 1 } else { 2 },
                    members,
                }
            }
            _ => unsupported(),
        }
    }

    /// The type without `Nullable`/`LowCardinality` wrappers.
    pub fn base(&self) -> &ChType {
        match self {
            ChType::Nullable(t) | ChType::LowCardinality(t) => t.base(),
            t => t,
        }
    }

    /// Whether NULL can be stored (a `Nullable` at any wrapper level).
    pub fn is_nullable(&self) -> bool {
        match self {
            ChType::Nullable(_) => true,
            ChType::LowCardinality(t) => t.is_nullable(),
            _ => false,
        }
    }

    /// Bytes of a Decimal of this precision.
    pub fn decimal_bytes(precision: u32) -> usize {
        match precision {
            0..=9 => 4,
            10..=18 => 8,
            _ => 16,
        }
    }
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChType::Nullable(t) => write!(f, "Nullable({t})"),
            ChType::LowCardinality(t) => write!(f, "LowCardinality({t})"),
            ChType::String => f.write_str("String"),
            ChType::FixedString(n) => write!(f, "FixedString({n})"),
            ChType::UInt(b) => write!(f, "UInt{}", b * 8),
            ChType::Int(b) => write!(f, "Int{}", b * 8),
            ChType::Float32 => f.write_str("Float32"),
            ChType::Float64 => f.write_str("Float64"),
            ChType::Bool => f.write_str("Bool"),
            ChType::Date => f.write_str("Date"),
            ChType::Date32 => f.write_str("Date32"),
            ChType::DateTime => f.write_str("DateTime"),
            ChType::DateTime64(p) => write!(f, "DateTime64({p})"),
            ChType::Uuid => f.write_str("UUID"),
            ChType::Ipv4 => f.write_str("IPv4"),
            ChType::Ipv6 => f.write_str("IPv6"),
            ChType::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            ChType::Enum { bytes, members } => {
                write!(f, "Enum{}(", bytes * 8)?;
                for (i, (n, v)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "'{}' = {v}",
                        n.replace('\\', "\\\\").replace('\'', "\\'")
                    )?;
                }
                f.write_str(")")
            }
            ChType::Unsupported(s) => f.write_str(s),
        }
    }
}

/// Splits a type's arguments at top-level commas (outside brackets and quotes).
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut escaped = false;
    let mut cur = String::new();
    for c in s.chars() {
        if quoted {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '\'' {
                quoted = false;
            }
            continue;
        }
        match c {
            '\'' => {
                quoted = true;
                cur.push(c);
            }
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `'a\'b'` → `a'b`.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_an_operator_might_use_parse() {
        let cases = [
            ("String", ChType::String),
            (
                "Nullable(String)",
                ChType::Nullable(Box::new(ChType::String)),
            ),
            (
                "LowCardinality(Nullable(String))",
                ChType::LowCardinality(Box::new(ChType::Nullable(Box::new(ChType::String)))),
            ),
            ("FixedString(16)", ChType::FixedString(16)),
            ("UInt8", ChType::UInt(1)),
            ("Int64", ChType::Int(8)),
            ("DateTime('UTC')", ChType::DateTime),
            ("DateTime", ChType::DateTime),
            ("DateTime64(3, 'UTC')", ChType::DateTime64(3)),
            ("DateTime64(6)", ChType::DateTime64(6)),
            (
                "Decimal(10, 2)",
                ChType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            (
                "Decimal64(4)",
                ChType::Decimal {
                    precision: 18,
                    scale: 4,
                },
            ),
            ("UUID", ChType::Uuid),
            ("IPv6", ChType::Ipv6),
            ("Bool", ChType::Bool),
            ("Date32", ChType::Date32),
        ];
        for (s, want) in cases {
            assert_eq!(ChType::parse(s), want, "{s}");
        }
    }

    #[test]
    fn enums_keep_their_members_including_quotes_and_commas() {
        let t = ChType::parse("Enum8('a' = 1, 'b,\\'c' = -2)");
        assert_eq!(
            t,
            ChType::Enum {
                bytes: 1,
                members: vec![("a".into(), 1), ("b,'c".into(), -2)]
            }
        );
    }

    #[test]
    fn composite_types_are_unsupported() {
        for s in [
            "Array(String)",
            "Map(String, String)",
            "Tuple(a UInt8)",
            "Decimal(76, 2)",
            "JSON",
        ] {
            assert!(matches!(ChType::parse(s), ChType::Unsupported(_)), "{s}");
        }
    }

    #[test]
    fn nullability_looks_through_low_cardinality() {
        assert!(ChType::parse("LowCardinality(Nullable(String))").is_nullable());
        assert!(!ChType::parse("LowCardinality(String)").is_nullable());
        assert_eq!(
            ChType::parse("Nullable(DateTime64(3, 'UTC'))").base(),
            &ChType::DateTime64(3)
        );
    }
}
