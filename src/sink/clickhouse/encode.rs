//! The schema-driven RowBinary encoder: writes each [`Event`] as one row of the columns the
//! table shares with [`COLUMNS`](crate::event::COLUMNS), each value converted to the *server's* column type.
//!
//! RowBinary is the concatenation of each row's values in the INSERT's column order, no
//! separators: integers and floats little-endian, strings as a LEB128 length then bytes,
//! `Nullable` as a 0/1 flag then the value, `LowCardinality(T)` exactly as `T`, `UUID` as its
//! two 64-bit halves each little-endian, `DateTime` as UInt32 seconds, `DateTime64(p)` as Int64
//! ticks, `Date` as UInt16 days.
//!
//! # Invariants
//!
//! - The bytes are a pure function of (columns, rows): a retry resends identical bytes, and a
//!   sub-batch is the concatenation of its rows' bytes.
//! - A value that cannot become the column's type (text that doesn't parse as the column's
//!   number, a number out of range, a string longer than a `FixedString`) rejects the *row*
//!   with a reason; no bytes of it are written. NULL into a non-`Nullable` column writes the
//!   type's default (0, empty, the epoch), like ClickHouse's own input formats.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use uuid::Uuid;

use super::types::ChType;
use crate::event::{Accessor, Event, Kind, Value};

/// Rows encoded before the buffer is reserved for the rest of the batch from their size.
const SIZE_SAMPLE_ROWS: usize = 64;

/// One column of the INSERT: a table column that sluice fills.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetColumn {
    /// Its name (shared by the table and [`crate::event::COLUMNS`]).
    pub name: String,
    /// The table's type for it.
    pub ty: ChType,
    /// What sluice puts in it.
    pub kind: Kind,
}

/// The encoded rows of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    /// Every accepted row's bytes, back to back.
    pub data: Vec<u8>,
    /// Per input row, its bytes in `data`, or `None` when the row was rejected.
    pub rows: Vec<Option<Range<usize>>>,
    /// Rejected rows: (index in the input, reason).
    pub rejected: Vec<(usize, String)>,
}

impl Encoded {
    /// Indices of the accepted rows, in order.
    pub fn accepted(&self) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.rows[i].is_some())
            .collect()
    }

    /// The RowBinary body of the accepted rows `indices` (each from [`Encoded::accepted`]).
    /// Contiguous rows (the common, whole-batch case) are borrowed, not copied.
    pub fn body(&self, indices: &[usize]) -> Cow<'_, [u8]> {
        let mut ranges = indices.iter().filter_map(|&i| self.rows[i].as_ref());
        let Some(first) = ranges.next() else {
            return Cow::Borrowed(&[]);
        };
        let mut pending = first.clone();
        let mut out: Option<Vec<u8>> = None;
        for r in ranges {
            if pending.end == r.start {
                pending.end = r.end;
            } else {
                out.get_or_insert_with(Vec::new)
                    .extend_from_slice(&self.data[pending]);
                pending = r.clone();
            }
        }
        match out {
            None => Cow::Borrowed(&self.data[pending]),
            Some(mut out) => {
                out.extend_from_slice(&self.data[pending]);
                Cow::Owned(out)
            }
        }
    }
}

/// Encodes events as RowBinary for a fixed column list.
#[derive(Debug, Clone)]
pub struct Encoder {
    columns: Vec<TargetColumn>,
    /// Per column, how to read and write its value, compiled once here rather than worked out
    /// per row (see [`Step`]).
    plan: Vec<Step>,
}

impl PartialEq for Encoder {
    /// Encoders of the same columns are equal (the plan follows from the columns).
    fn eq(&self, other: &Encoder) -> bool {
        self.columns == other.columns
    }
}

/// One column of an [`Encoder`]'s plan: its reader and its type with the `Nullable` /
/// `LowCardinality` wrappers flattened away.
///
/// Why: [`write_value`] walks the (boxed, possibly two-deep) type tree and matches every value
/// kind per value, most of the encoder's own CPU in a profile of the daemon. A step does one
/// flat match on the pairs sluice's columns actually produce (text into `String`, a timestamp
/// into `DateTime`, …) and hands anything else to [`write_value`] on the base type, so the
/// bytes and the errors stay exactly [`write_value`]'s.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The reader of the column's value ([`Event::accessor`]); `None` for a name sluice has no
    /// column for (always NULL).
    read: Option<Accessor>,
    /// Exactly one `Nullable` wraps the base type (at any depth among `LowCardinality`s): a
    /// NULL is the flag 1 alone, anything else the flag 0 then the value.
    nullable: bool,
    /// How to write a non-NULL value (or NULL when not `nullable`).
    op: Op,
}

/// The base type of a [`Step`], for the (type, value) pairs with a fast path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    /// `String`.
    String,
    /// `DateTime`.
    DateTime,
    /// `DateTime64(p)`.
    DateTime64(u32),
    /// `UInt8` … `UInt64` (bytes).
    UInt(u8),
    /// `Int8` … `Int64` (bytes).
    Int(u8),
    /// `Float64`.
    Float64,
    /// `UUID`.
    Uuid,
    /// Any other base type: every value goes to [`write_value`] on the base type.
    Base,
    /// More than one `Nullable` in the wrappers (which ClickHouse refuses anyway): the whole
    /// type goes to [`write_value`], and `nullable` is false.
    Whole,
}

impl Step {
    /// The step for a column of type `ty` read by `read`.
    fn new(ty: &ChType, read: Option<Accessor>) -> Step {
        let mut nulls = 0;
        let mut t = ty;
        while let ChType::Nullable(inner) | ChType::LowCardinality(inner) = t {
            nulls += matches!(t, ChType::Nullable(_)) as u32;
            t = inner;
        }
        let op = match t {
            _ if nulls > 1 => Op::Whole,
            ChType::String => Op::String,
            ChType::DateTime => Op::DateTime,
            ChType::DateTime64(p) => Op::DateTime64(*p),
            ChType::UInt(n) => Op::UInt(*n),
            ChType::Int(n) => Op::Int(*n),
            ChType::Float64 => Op::Float64,
            ChType::Uuid => Op::Uuid,
            _ => Op::Base,
        };
        Step {
            read,
            nullable: nulls == 1,
            op,
        }
    }

    /// Writes `v` to a column of type `ty` (the type this step was made from): the same bytes
    /// and errors as `write_value(buf, ty, v)`.
    #[inline]
    fn write(self, buf: &mut Vec<u8>, ty: &ChType, v: Value<'_>) -> Result<(), String> {
        if self.nullable {
            if v == Value::Null {
                buf.push(1);
                return Ok(());
            }
            buf.push(0);
        }
        match (self.op, v) {
            (Op::String, Value::Text(s)) => {
                write_str(buf, s);
                Ok(())
            }
            (Op::DateTime, Value::TimestampMs(ms)) => write_datetime(buf, ms),
            (Op::DateTime64(p), Value::TimestampMs(ms)) => write_datetime64(buf, p, ms),
            (Op::UInt(n), Value::UInt(u)) => write_uint(buf, n, u),
            (Op::UInt(1), Value::Bool(b)) => {
                buf.push(b as u8);
                Ok(())
            }
            (Op::Int(n), Value::Int(i)) => write_int(buf, n, i as i128),
            (Op::Float64, Value::Float(f)) => {
                buf.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            (Op::Uuid, Value::Uuid(u)) => {
                write_uuid(buf, u);
                Ok(())
            }
            (Op::Whole, v) => write_value(buf, ty, v),
            // Rarer pairs (NULL into a non-Nullable column, text into a number, …) and other
            // types; the flag, if any, is already written.
            (_, v) => write_value(buf, ty.base(), v),
        }
    }
}

impl Encoder {
    /// An encoder for `columns`, in INSERT order. Every column's type should have passed
    /// [`compatible`]; one that did not rejects every row that has a value for it.
    pub fn new(columns: Vec<TargetColumn>) -> Encoder {
        let plan = columns
            .iter()
            .map(|c| Step::new(&c.ty, Event::accessor(&c.name)))
            .collect();
        Encoder { columns, plan }
    }

    /// The columns, in INSERT order.
    pub fn columns(&self) -> &[TargetColumn] {
        &self.columns
    }

    /// `` `a`, `b` ``: the INSERT's explicit column list.
    pub fn column_list(&self) -> String {
        let names: Vec<String> = self.columns.iter().map(|c| quote_ident(&c.name)).collect();
        names.join(", ")
    }

    /// `a String, b Nullable(Int64)`: the structure argument of `file(…, 'RowBinary', …)`.
    pub fn structure(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.ty))
            .collect();
        cols.join(", ")
    }

    /// Encodes `rows`; rows that cannot be encoded are listed in [`Encoded::rejected`].
    pub fn encode(&self, rows: &[Event]) -> Encoded {
        let mut out = Encoded::default();
        self.encode_into(&mut out, rows, rows.len());
        out
    }

    /// Appends `rows` to `out` (their indices continue from the rows already there). `expect`
    /// is how many rows `out` will hold in all, a hint for reserving once.
    pub fn encode_into(&self, out: &mut Encoded, rows: &[Event], expect: usize) {
        let more = rows.len().max(expect.saturating_sub(out.rows.len()));
        out.rows.reserve(more);
        for row in rows {
            let i = out.rows.len();
            if i > 0 && i == SIZE_SAMPLE_ROWS.min(expect.saturating_sub(1)) {
                // Reserve once from the size of the first rows (plus an eighth), instead of
                // growing by doubling or reserving a fixed guess per column.
                let per_row = out.data.len() / i;
                out.data.reserve((expect - i) * (per_row + per_row / 8));
            }
            let start = out.data.len();
            match self.encode_row(row, &mut out.data) {
                Ok(()) => out.rows.push(Some(start..out.data.len())),
                Err(reason) => {
                    out.data.truncate(start);
                    out.rows.push(None);
                    out.rejected.push((i, reason));
                }
            }
        }
    }

    fn encode_row(&self, row: &Event, buf: &mut Vec<u8>) -> Result<(), String> {
        for (c, step) in self.columns.iter().zip(&self.plan) {
            let value = step.read.map_or(Value::Null, |read| read(row));
            step.write(buf, &c.ty, value)
                .map_err(|e| format!("column `{}` ({}): {e}", c.name, c.ty))?;
        }
        Ok(())
    }
}

/// Backquotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Whether values of `kind` can ever be written to a column of type `ty`; `Err` says why not.
/// (Individual values may still be rejected, e.g. text that doesn't parse as the number.)
pub fn compatible(kind: Kind, ty: &ChType) -> Result<(), String> {
    let base = ty.base();
    let ok = match base {
        ChType::Unsupported(name) => return Err(format!("sluice cannot write type {name}")),
        ChType::String => true,
        ChType::FixedString(n) => kind != Kind::Uuid || *n >= 16,
        ChType::Uuid => matches!(
            kind,
            Kind::Uuid | Kind::Text | Kind::LowCardinalityText | Kind::Json
        ),
        ChType::Date | ChType::Date32 | ChType::DateTime | ChType::DateTime64(_) => {
            matches!(kind, Kind::Timestamp | Kind::Int | Kind::UInt)
        }
        ChType::Ipv4 | ChType::Ipv6 | ChType::Enum { .. } => {
            matches!(kind, Kind::Text | Kind::LowCardinalityText | Kind::Json)
        }
        ChType::UInt(_)
        | ChType::Int(_)
        | ChType::Float32
        | ChType::Float64
        | ChType::Bool
        | ChType::Decimal { .. } => kind != Kind::Uuid,
        ChType::Nullable(_) | ChType::LowCardinality(_) => unreachable!("base() unwraps"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("a {kind:?} value cannot be stored as {ty}"))
    }
}

fn write_value(buf: &mut Vec<u8>, ty: &ChType, v: Value<'_>) -> Result<(), String> {
    match ty {
        ChType::Nullable(inner) => {
            if v == Value::Null {
                buf.push(1);
                Ok(())
            } else {
                buf.push(0);
                write_value(buf, inner, v)
            }
        }
        ChType::LowCardinality(inner) => write_value(buf, inner, v),
        ChType::String => {
            let mut tmp = String::new();
            let s: &str = match v {
                Value::Null => "",
                Value::Text(s) => s,
                other => {
                    text_of(other, &mut tmp);
                    &tmp
                }
            };
            write_str(buf, s);
            Ok(())
        }
        ChType::FixedString(n) => {
            let mut tmp = String::new();
            let bytes: &[u8] = match v {
                Value::Null => &[],
                Value::Text(s) => s.as_bytes(),
                Value::Uuid(u) => u.as_bytes(),
                other => {
                    text_of(other, &mut tmp);
                    tmp.as_bytes()
                }
            };
            if bytes.len() > *n {
                return Err(format!("{} bytes do not fit in {n}", bytes.len()));
            }
            buf.extend_from_slice(bytes);
            buf.resize(buf.len() + n - bytes.len(), 0);
            Ok(())
        }
        ChType::UInt(bytes) => {
            let x: u64 = match v {
                Value::Null => 0,
                Value::Bool(b) => b as u64,
                Value::UInt(u) => u,
                Value::Int(i) | Value::TimestampMs(i) => {
                    u64::try_from(i).map_err(|_| format!("{i} is negative"))?
                }
                Value::Float(f) => float_to_int(f, false)?
                    .try_into()
                    .map_err(|_| format!("{f} is out of range"))?,
                Value::Text(s) => parse_int(s)?
                    .try_into()
                    .map_err(|_| format!("`{s}` is out of range"))?,
                Value::Uuid(_) => return Err("a UUID is not a number".into()),
            };
            write_uint(buf, *bytes, x)
        }
        ChType::Int(bytes) => {
            let x: i128 = match v {
                Value::Null => 0,
                Value::Bool(b) => b as i128,
                Value::UInt(u) => u as i128,
                Value::Int(i) | Value::TimestampMs(i) => i as i128,
                Value::Float(f) => float_to_int(f, false)?,
                Value::Text(s) => parse_int(s)?,
                Value::Uuid(_) => return Err("a UUID is not a number".into()),
            };
            write_int(buf, *bytes, x)
        }
        ChType::Float32 | ChType::Float64 => {
            let f: f64 = match v {
                Value::Null => 0.0,
                Value::Bool(b) => b as u8 as f64,
                Value::UInt(u) => u as f64,
                Value::Int(i) | Value::TimestampMs(i) => i as f64,
                Value::Float(f) => f,
                Value::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}` is not a number"))?,
                Value::Uuid(_) => return Err("a UUID is not a number".into()),
            };
            if *ty == ChType::Float32 {
                buf.extend_from_slice(&(f as f32).to_le_bytes());
            } else {
                buf.extend_from_slice(&f.to_le_bytes());
            }
            Ok(())
        }
        ChType::Bool => {
            let b = match v {
                Value::Null => false,
                Value::Bool(b) => b,
                Value::UInt(u) => u != 0,
                Value::Int(i) | Value::TimestampMs(i) => i != 0,
                Value::Float(f) => f != 0.0,
                Value::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" | "" => false,
                    _ => return Err(format!("`{s}` is not a boolean")),
                },
                Value::Uuid(_) => return Err("a UUID is not a boolean".into()),
            };
            buf.push(b as u8);
            Ok(())
        }
        ChType::Date | ChType::Date32 | ChType::DateTime | ChType::DateTime64(_) => {
            // Integers are taken as milliseconds, like TimestampMs.
            let ms: i64 = match v {
                Value::Null => 0,
                Value::TimestampMs(ms) | Value::Int(ms) => ms,
                Value::UInt(u) => i64::try_from(u).map_err(|_| format!("{u} is out of range"))?,
                other => return Err(format!("{other:?} is not a time")),
            };
            match ty {
                ChType::Date => {
                    let days = ms.div_euclid(86_400_000);
                    let d = u16::try_from(days)
                        .map_err(|_| format!("{ms} ms is outside Date's range"))?;
                    buf.extend_from_slice(&d.to_le_bytes());
                }
                ChType::Date32 => {
                    let days = ms.div_euclid(86_400_000);
                    let d = i32::try_from(days)
                        .map_err(|_| format!("{ms} ms is outside Date32's range"))?;
                    buf.extend_from_slice(&d.to_le_bytes());
                }
                ChType::DateTime => write_datetime(buf, ms)?,
                ChType::DateTime64(p) => write_datetime64(buf, *p, ms)?,
                _ => unreachable!(),
            }
            Ok(())
        }
        ChType::Uuid => {
            let u = match v {
                Value::Null => Uuid::nil(),
                Value::Uuid(u) => *u,
                Value::Text(s) => {
                    Uuid::parse_str(s.trim()).map_err(|_| format!("`{s}` is not a UUID"))?
                }
                other => return Err(format!("{other:?} is not a UUID")),
            };
            write_uuid(buf, &u);
            Ok(())
        }
        ChType::Ipv4 => {
            let a = match v {
                Value::Null => Ipv4Addr::UNSPECIFIED,
                Value::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}` is not an IPv4 address"))?,
                other => return Err(format!("{other:?} is not an IPv4 address")),
            };
            buf.extend_from_slice(&u32::from(a).to_le_bytes());
            Ok(())
        }
        ChType::Ipv6 => {
            let a: Ipv6Addr = match v {
                Value::Null => Ipv6Addr::UNSPECIFIED,
                Value::Text(s) => {
                    let s = s.trim();
                    match s.parse::<Ipv6Addr>() {
                        Ok(a) => a,
                        Err(_) => s
                            .parse::<Ipv4Addr>()
                            .map(|a| a.to_ipv6_mapped())
                            .map_err(|_| format!("`{s}` is not an IP address"))?,
                    }
                }
                other => return Err(format!("{other:?} is not an IP address")),
            };
            buf.extend_from_slice(&a.octets());
            Ok(())
        }
        ChType::Decimal { precision, scale } => {
            let scaled: i128 = match v {
                Value::Null => 0,
                Value::Bool(b) => (b as i128) * 10i128.pow(*scale),
                Value::UInt(u) => (u as i128)
                    .checked_mul(10i128.pow(*scale))
                    .ok_or("out of range")?,
                Value::Int(i) | Value::TimestampMs(i) => (i as i128)
                    .checked_mul(10i128.pow(*scale))
                    .ok_or("out of range")?,
                Value::Float(f) => float_to_int(f * 10f64.powi(*scale as i32), true)?,
                Value::Text(s) => parse_decimal(s, *scale)?,
                Value::Uuid(_) => return Err("a UUID is not a number".into()),
            };
            if scaled.unsigned_abs() >= 10u128.pow(*precision) {
                return Err(format!(
                    "the value does not fit Decimal({precision}, {scale})"
                ));
            }
            let n = ChType::decimal_bytes(*precision);
            buf.extend_from_slice(&scaled.to_le_bytes()[..n]);
            Ok(())
        }
        ChType::Enum { bytes, members } => {
            let value = match v {
                Value::Null => members.first().map(|m| m.1).unwrap_or(0),
                Value::Text(s) => members
                    .iter()
                    .find(|(n, _)| n == s)
                    .map(|m| m.1)
                    .ok_or_else(|| format!("`{s}` is not a member of the enum"))?,
                other => return Err(format!("{other:?} is not an enum member name")),
            };
            buf.extend_from_slice(&value.to_le_bytes()[..*bytes as usize]);
            Ok(())
        }
        ChType::Unsupported(name) => {
            if v == Value::Null {
                Err(format!("sluice cannot write type {name}"))
            } else {
                Err(format!("sluice cannot write a value as {name}"))
            }
        }
    }
}

/// A `String`: the length as LEB128, then the bytes.
#[inline]
fn write_str(buf: &mut Vec<u8>, s: &str) {
    write_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// A `UInt` of `bytes` bytes, or an error when `x` does not fit.
#[inline]
fn write_uint(buf: &mut Vec<u8>, bytes: u8, x: u64) -> Result<(), String> {
    let max = if bytes == 8 {
        u64::MAX
    } else {
        (1u64 << (bytes * 8)) - 1
    };
    if x > max {
        return Err(format!("{x} is out of range"));
    }
    buf.extend_from_slice(&x.to_le_bytes()[..bytes as usize]);
    Ok(())
}

/// An `Int` of `bytes` bytes, or an error when `x` does not fit.
#[inline]
fn write_int(buf: &mut Vec<u8>, bytes: u8, x: i128) -> Result<(), String> {
    let bits = bytes as u32 * 8;
    let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
    if x < min || x > max {
        return Err(format!("{x} is out of range"));
    }
    buf.extend_from_slice(&(x as i64).to_le_bytes()[..bytes as usize]);
    Ok(())
}

/// A `DateTime` (UInt32 seconds) from milliseconds, rounded down.
#[inline]
fn write_datetime(buf: &mut Vec<u8>, ms: i64) -> Result<(), String> {
    let s = u32::try_from(ms.div_euclid(1000))
        .map_err(|_| format!("{ms} ms is outside DateTime's range"))?;
    buf.extend_from_slice(&s.to_le_bytes());
    Ok(())
}

/// A `DateTime64(p)` (Int64 ticks of 10^-p s) from milliseconds, rounded down.
#[inline]
fn write_datetime64(buf: &mut Vec<u8>, p: u32, ms: i64) -> Result<(), String> {
    let ticks = if p >= 3 {
        (ms as i128) * 10i128.pow(p - 3)
    } else {
        (ms as i128).div_euclid(10i128.pow(3 - p))
    };
    let t = i64::try_from(ticks).map_err(|_| format!("{ms} ms is outside DateTime64's range"))?;
    buf.extend_from_slice(&t.to_le_bytes());
    Ok(())
}

/// A `UUID`: its two 64-bit halves, each little-endian.
#[inline]
fn write_uuid(buf: &mut Vec<u8>, u: &Uuid) {
    let (hi, lo) = u.as_u64_pair();
    buf.extend_from_slice(&hi.to_le_bytes());
    buf.extend_from_slice(&lo.to_le_bytes());
}

/// Text form of a non-text value for String columns: numbers in decimal, booleans as
/// `true`/`false`, timestamps as `YYYY-MM-DD hh:mm:ss.mmm` (UTC), UUIDs hyphenated.
fn text_of(v: Value<'_>, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Text(s) => out.push_str(s),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::TimestampMs(ms) => format_timestamp_ms(ms, out),
        Value::Uuid(u) => {
            let _ = write!(out, "{}", u.hyphenated());
        }
    }
}

/// `YYYY-MM-DD hh:mm:ss.mmm`, UTC.
pub fn format_timestamp_ms(ms: i64, out: &mut String) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    );
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn parse_int(s: &str) -> Result<i128, String> {
    s.trim()
        .parse::<i128>()
        .map_err(|_| format!("`{s}` is not an integer"))
}

/// A float as an integer: exact integers only, unless `round` (decimal scaling).
fn float_to_int(f: f64, round: bool) -> Result<i128, String> {
    if !f.is_finite() {
        return Err(format!("{f} is not a finite number"));
    }
    if !round && f.fract() != 0.0 {
        return Err(format!("{f} is not an integer"));
    }
    let r = f.round();
    if r.abs() >= 1.7e38 {
        return Err(format!("{f} is out of range"));
    }
    Ok(r as i128)
}

/// `"-12.345"` at scale 2 → -1235 (rounded half away from zero).
fn parse_decimal(s: &str, scale: u32) -> Result<i128, String> {
    let bad = || format!("`{s}` is not a decimal number");
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let mut v: i128 = 0;
    for b in int.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((b - b'0') as i128))
            .ok_or_else(bad)?;
    }
    let fb = frac.as_bytes();
    for i in 0..scale as usize {
        let d = fb.get(i).map(|b| (b - b'0') as i128).unwrap_or(0);
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d))
            .ok_or_else(bad)?;
    }
    if fb.get(scale as usize).is_some_and(|&b| b >= b'5') {
        v += 1;
    }
    Ok(if neg { -v } else { v })
}

fn write_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, kind: Kind) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            ty: ChType::parse(ty),
            kind,
        }
    }

    #[test]
    fn strings_are_length_prefixed_and_null_writes_the_flag() {
        let enc = Encoder::new(vec![
            col("app_id", "Nullable(String)", Kind::Text),
            col("platform", "String", Kind::Text),
        ]);
        let e = Event {
            platform: Some("web".into()),
            ..Event::default()
        };
        let out = enc.encode(&[e]);
        assert_eq!(out.data, vec![1, 3, b'w', b'e', b'b']);
        assert!(out.rejected.is_empty());
    }

    #[test]
    fn text_that_does_not_parse_as_the_columns_number_rejects_only_that_row() {
        let enc = Encoder::new(vec![col("app_id", "UInt8", Kind::Text)]);
        let rows = [
            Event {
                app_id: Some("7".into()),
                ..Event::default()
            },
            Event {
                app_id: Some("seven".into()),
                ..Event::default()
            },
            Event {
                app_id: Some("300".into()),
                ..Event::default()
            },
            Event::default(),
        ];
        let out = enc.encode(&rows);
        assert_eq!(out.data, vec![7, 0]);
        assert_eq!(
            out.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            out.rejected[0].1.contains("app_id"),
            "{}",
            out.rejected[0].1
        );
        assert_eq!(out.accepted(), vec![0, 3]);
        assert_eq!(&*out.body(&[3]), &[0]);
    }

    #[test]
    fn a_body_is_its_rows_bytes_back_to_back_borrowed_when_contiguous() {
        let enc = Encoder::new(vec![col("app_id", "UInt8", Kind::Text)]);
        let rows: Vec<Event> = ["1", "x", "3", "4"]
            .iter()
            .map(|v| Event {
                app_id: Some((*v).into()),
                ..Event::default()
            })
            .collect();
        let out = enc.encode(&rows);
        assert_eq!(out.accepted(), vec![0, 2, 3]);
        let whole = out.body(&out.accepted());
        assert_eq!(&*whole, &[1, 3, 4]);
        assert!(
            matches!(whole, Cow::Borrowed(_)),
            "rows 2 and 3 follow row 0's bytes"
        );
        assert_eq!(&*out.body(&[0, 3]), &[1, 4]);
        assert!(out.body(&[]).is_empty());
    }

    #[test]
    fn timestamps_follow_the_column_precision() {
        let enc = Encoder::new(vec![
            col("collector_tstamp", "DateTime64(3, 'UTC')", Kind::Timestamp),
            col("derived_tstamp", "DateTime", Kind::Timestamp),
            col("true_tstamp", "DateTime64(6)", Kind::Timestamp),
            col("dvce_sent_tstamp", "String", Kind::Timestamp),
        ]);
        let e = Event {
            collector_tstamp: Some(1_700_000_000_123),
            derived_tstamp: Some(1_700_000_000_999),
            true_tstamp: Some(1_700_000_000_123),
            dvce_sent_tstamp: Some(1_700_000_000_123),
            ..Event::default()
        };
        let out = enc.encode(&[e]);
        let mut want = Vec::new();
        want.extend_from_slice(&1_700_000_000_123i64.to_le_bytes());
        want.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        want.extend_from_slice(&1_700_000_000_123_000i64.to_le_bytes());
        want.push(23);
        want.extend_from_slice(b"2023-11-14 22:13:20.123");
        assert_eq!(out.data, want);
    }

    #[test]
    fn uuids_are_written_as_two_little_endian_halves() {
        let enc = Encoder::new(vec![col("event_id", "UUID", Kind::Uuid)]);
        let u = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let out = enc.encode(&[Event {
            event_id: Some(u),
            ..Event::default()
        }]);
        assert_eq!(
            out.data,
            vec![
                0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa,
                0x99, 0x88
            ]
        );
    }

    #[test]
    fn decimals_scale_and_round() {
        assert_eq!(parse_decimal("12.345", 2), Ok(1235));
        assert_eq!(parse_decimal("-0.5", 0), Ok(-1));
        assert_eq!(parse_decimal("7", 3), Ok(7000));
        assert!(parse_decimal("1e3", 2).is_err());
        let enc = Encoder::new(vec![col("tr_total", "Decimal(4, 2)", Kind::Float)]);
        let out = enc.encode(&[
            Event {
                tr_total: Some(12.5),
                ..Event::default()
            },
            Event {
                tr_total: Some(123.0),
                ..Event::default()
            },
        ]);
        assert_eq!(out.data, 1250i32.to_le_bytes().to_vec());
        assert_eq!(out.rejected.len(), 1);
    }

    #[test]
    fn incompatible_kinds_are_named() {
        assert!(compatible(Kind::Uuid, &ChType::parse("DateTime")).is_err());
        assert!(compatible(
            Kind::Timestamp,
            &ChType::parse("Nullable(DateTime64(3, 'UTC'))")
        )
        .is_ok());
        assert!(compatible(Kind::Text, &ChType::parse("Array(String)")).is_err());
        assert!(compatible(
            Kind::Text,
            &ChType::parse("LowCardinality(Nullable(String))")
        )
        .is_ok());
    }

    /// Every base type the encoder knows, with parameters at both ends where they matter.
    fn base_types() -> Vec<ChType> {
        let mut out = vec![
            ChType::String,
            ChType::FixedString(4),
            ChType::FixedString(16),
            ChType::Float32,
            ChType::Float64,
            ChType::Bool,
            ChType::Date,
            ChType::Date32,
            ChType::DateTime,
            ChType::Uuid,
            ChType::Ipv4,
            ChType::Ipv6,
            ChType::parse("Decimal(4, 2)"),
            ChType::parse("Decimal(38, 5)"),
            ChType::parse("Enum8('a' = 1, 'b' = -2)"),
            ChType::parse("Enum16('x' = 1000)"),
            ChType::Unsupported("Array(String)".into()),
        ];
        for n in [1, 2, 4, 8] {
            out.push(ChType::UInt(n));
            out.push(ChType::Int(n));
        }
        for p in [0, 2, 3, 6, 9] {
            out.push(ChType::DateTime64(p));
        }
        out
    }

    /// `t` bare and under every wrapping the plan flattens (and a double `Nullable`, which it
    /// does not).
    fn wrappings(t: ChType) -> Vec<ChType> {
        let n = |t: ChType| ChType::Nullable(Box::new(t));
        let lc = |t: ChType| ChType::LowCardinality(Box::new(t));
        vec![
            t.clone(),
            n(t.clone()),
            lc(t.clone()),
            lc(n(t.clone())),
            n(lc(t.clone())),
            lc(lc(n(t.clone()))),
            n(n(t.clone())),
            lc(n(n(t))),
        ]
    }

    #[test]
    fn the_plan_writes_what_write_value_writes_for_every_type_and_value() {
        let u = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let values = [
            Value::Null,
            Value::Text(""),
            Value::Text("7"),
            Value::Text(" -1 "),
            Value::Text("300"),
            Value::Text("70000"),
            Value::Text("1.5"),
            Value::Text("seven"),
            Value::Text("true"),
            Value::Text("a"),
            Value::Text("00112233-4455-6677-8899-aabbccddeeff"),
            Value::Text("192.168.0.1"),
            Value::Text("::1"),
            Value::Text("a string longer than sixteen bytes"),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(127),
            Value::Int(128),
            Value::Int(300),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::UInt(0),
            Value::UInt(255),
            Value::UInt(256),
            Value::UInt(65_536),
            Value::UInt(1 << 32),
            Value::UInt(i64::MAX as u64 + 1),
            Value::UInt(u64::MAX),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Float(1.5),
            Value::Float(2.0),
            Value::Float(-3.0),
            Value::Float(1e40),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Bool(false),
            Value::Bool(true),
            Value::TimestampMs(0),
            Value::TimestampMs(-1),
            Value::TimestampMs(1_700_000_000_123),
            Value::TimestampMs(4_294_967_296_000),
            Value::TimestampMs(i64::MAX),
            Value::TimestampMs(i64::MIN),
            Value::Uuid(&u),
        ];
        let mut ops = Vec::new();
        for ty in base_types().into_iter().flat_map(wrappings) {
            let step = Step::new(&ty, None);
            ops.push(step.op);
            for &v in &values {
                // A non-empty buffer: both must append, and leave the same bytes on an error.
                let (mut want, mut got) = (vec![0xa5], vec![0xa5]);
                let want_r = write_value(&mut want, &ty, v);
                let got_r = step.write(&mut got, &ty, v);
                assert_eq!((got_r, got), (want_r, want), "{ty} ← {v:?}");
            }
        }
        for op in [
            Op::String,
            Op::DateTime,
            Op::DateTime64(3),
            Op::UInt(1),
            Op::UInt(8),
            Op::Int(8),
            Op::Float64,
            Op::Uuid,
            Op::Base,
            Op::Whole,
        ] {
            assert!(ops.contains(&op), "no type is planned as {op:?}");
        }
    }

    #[test]
    fn the_plan_flattens_one_nullable_among_low_cardinality() {
        for t in [
            "Nullable(String)",
            "LowCardinality(Nullable(String))",
            "Nullable(LowCardinality(String))",
        ] {
            let step = Step::new(&ChType::parse(t), None);
            assert!(step.nullable && step.op == Op::String, "{t}: {step:?}");
        }
        let step = Step::new(&ChType::parse("LowCardinality(String)"), None);
        assert!(!step.nullable && step.op == Op::String);
        let step = Step::new(&ChType::parse("Nullable(Nullable(UInt8))"), None);
        assert!(!step.nullable && step.op == Op::Whole);
        let step = Step::new(&ChType::parse("Nullable(Float32)"), None);
        assert!(step.nullable && step.op == Op::Base);
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
