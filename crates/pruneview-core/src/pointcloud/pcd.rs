//! PCD (Point Cloud Library) reader: `DATA ascii` and `DATA binary`.
//!
//! Only x, y, z and intensity are kept, as f32, whatever their stored numeric type (F 4/8,
//! I or U 1/2/4/8; integers are converted as values, not rescaled). Other fields are skipped
//! using their SIZE and COUNT. `DATA binary_compressed` is refused with a clear message rather
//! than pulling in an LZF decoder. Binary data is little-endian, as PCL writes it.

use std::path::Path;

use super::scan::{PCD_COLUMNS, ScanError};

/// Points read from a PCD file: x, y, z, intensity rows.
pub(crate) struct PcdRead {
    pub points: Vec<f32>,
    pub points_read: usize,
    pub non_finite_dropped: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    F,
    I,
    U,
}

#[derive(Clone, Copy, Debug)]
struct FieldType {
    kind: Kind,
    size: usize,
}

impl FieldType {
    /// Decodes one little-endian value (`bytes.len() == size`) as f32.
    fn decode(self, b: &[u8]) -> f32 {
        match (self.kind, self.size) {
            (Kind::F, 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (Kind::F, _) => f64::from_le_bytes(arr8(b)) as f32,
            (Kind::I, 1) => b[0] as i8 as f32,
            (Kind::I, 2) => i16::from_le_bytes([b[0], b[1]]) as f32,
            (Kind::I, 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            (Kind::I, _) => i64::from_le_bytes(arr8(b)) as f32,
            (Kind::U, 1) => b[0] as f32,
            (Kind::U, 2) => u16::from_le_bytes([b[0], b[1]]) as f32,
            (Kind::U, 4) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            (Kind::U, _) => u64::from_le_bytes(arr8(b)) as f32,
        }
    }
}

fn arr8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Values per point read at most (PCL's largest descriptors have a few hundred); a larger
/// COUNT is a corrupt or hostile header.
const MAX_VALUES_PER_POINT: usize = 1 << 16;

/// The parsed header.
struct Header {
    fields: Vec<String>,
    types: Vec<FieldType>,
    counts: Vec<usize>,
    points: usize,
    data: String,
    /// Byte offset of the first data byte.
    data_offset: usize,
    /// 1-based line number of the DATA line.
    data_line: usize,
}

pub(crate) fn read_pcd(path: &Path, bytes: &[u8]) -> Result<PcdRead, ScanError> {
    let header = parse_header(path, bytes)?;
    // Where x, y, z, intensity live: (value index for ascii, byte offset for binary, type).
    let mut value_index = Vec::with_capacity(header.fields.len());
    let mut byte_offset = Vec::with_capacity(header.fields.len());
    let (mut vi, mut bo) = (0usize, 0usize);
    let header_error = |problem: String| ScanError::PcdHeader {
        path: path.to_path_buf(),
        line: header.data_line,
        problem,
    };
    for ((t, &c), name) in header.types.iter().zip(&header.counts).zip(&header.fields) {
        value_index.push(vi);
        byte_offset.push(bo);
        vi = vi.saturating_add(c);
        bo = bo.saturating_add(t.size.saturating_mul(c));
        if vi > MAX_VALUES_PER_POINT {
            return Err(header_error(format!(
                "COUNT {c} of field {name} makes {vi} values per point; at most \
                 {MAX_VALUES_PER_POINT} are read"
            )));
        }
    }
    let (values_per_point, record) = (vi, bo);
    if record == 0 {
        return Err(header_error(
            "every field has COUNT 0: no values per point".into(),
        ));
    }
    let mut wanted = [(
        0usize,
        0usize,
        FieldType {
            kind: Kind::F,
            size: 4,
        },
    ); 4];
    for (w, name) in wanted.iter_mut().zip(PCD_COLUMNS) {
        let i = header
            .fields
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| ScanError::PcdMissingField {
                path: path.to_path_buf(),
                field: name,
                found: header.fields.join(" "),
            })?;
        *w = (value_index[i], byte_offset[i], header.types[i]);
    }

    let data = &bytes[header.data_offset..];
    // Every point takes at least one byte of the file: a header promising more points than
    // that is caught below, without allocating for them first.
    let mut points = Vec::with_capacity(header.points.min(data.len()) * 4);
    let mut dropped = 0;
    let mut push = |p: [f32; 4]| {
        if p.iter().all(|v| v.is_finite()) {
            points.extend_from_slice(&p);
        } else {
            dropped += 1;
        }
    };
    match header.data.as_str() {
        "ascii" => {
            let text = std::str::from_utf8(data).map_err(|e| ScanError::PcdAscii {
                path: path.to_path_buf(),
                line: header.data_line + 1 + count_lines(&data[..e.valid_up_to()]),
                problem: "not valid UTF-8 text".into(),
            })?;
            let mut n = 0;
            for (k, line) in text.lines().enumerate() {
                let line_no = header.data_line + 1 + k;
                let ascii_error = |problem: String| ScanError::PcdAscii {
                    path: path.to_path_buf(),
                    line: line_no,
                    problem,
                };
                let tokens: Vec<&str> = line.split_whitespace().collect();
                if tokens.is_empty() {
                    continue;
                }
                if n == header.points {
                    return Err(ascii_error(format!(
                        "more data lines than the header's {} points",
                        header.points
                    )));
                }
                if tokens.len() != values_per_point {
                    return Err(ascii_error(format!(
                        "expected {values_per_point} values (FIELDS x COUNT), found {}",
                        tokens.len()
                    )));
                }
                let mut p = [0f32; 4];
                for (v, (name, &(index, _, _))) in p.iter_mut().zip(PCD_COLUMNS.iter().zip(&wanted))
                {
                    let token = tokens[index];
                    *v = token.parse::<f32>().map_err(|_| {
                        ascii_error(format!("field {name}: '{token}' is not a number"))
                    })?;
                }
                push(p);
                n += 1;
            }
            if n != header.points {
                return Err(ScanError::PcdAscii {
                    path: path.to_path_buf(),
                    line: header.data_line + text.lines().count(),
                    problem: format!(
                        "the data ends after {n} points but the header promises {}",
                        header.points
                    ),
                });
            }
        }
        "binary" => {
            let expected = header.points.saturating_mul(record);
            if data.len() != expected {
                let problem = if data.len() < expected {
                    format!(
                        "the file ends early: {} points of {record} bytes need {expected} bytes, \
                         found {}",
                        header.points,
                        data.len()
                    )
                } else {
                    format!(
                        "{} unexpected bytes after {} points of {record} bytes",
                        data.len() - expected,
                        header.points
                    )
                };
                return Err(ScanError::PcdBinary {
                    path: path.to_path_buf(),
                    offset: header.data_offset as u64,
                    problem,
                });
            }
            if record > 0 {
                for rec in data.chunks_exact(record) {
                    let mut p = [0f32; 4];
                    for (v, &(_, off, t)) in p.iter_mut().zip(&wanted) {
                        *v = t.decode(&rec[off..off + t.size]);
                    }
                    push(p);
                }
            }
        }
        "binary_compressed" => {
            return Err(ScanError::PcdUnsupported {
                path: path.to_path_buf(),
                kind: header.data.clone(),
            });
        }
        other => {
            return Err(ScanError::PcdHeader {
                path: path.to_path_buf(),
                line: header.data_line,
                problem: format!("DATA '{other}': expected ascii, binary or binary_compressed"),
            });
        }
    }
    Ok(PcdRead {
        points,
        points_read: header.points,
        non_finite_dropped: dropped,
    })
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, ScanError> {
    let mut fields: Option<Vec<String>> = None;
    let mut sizes: Option<(usize, Vec<usize>)> = None;
    let mut kinds: Option<(usize, Vec<Kind>)> = None;
    let mut counts: Option<(usize, Vec<usize>)> = None;
    let mut width: Option<usize> = None;
    let mut height: Option<usize> = None;
    let mut points: Option<(usize, usize)> = None;

    let mut pos = 0;
    let mut line_no = 0;
    loop {
        line_no += 1;
        let err = |problem: String| ScanError::PcdHeader {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        };
        if pos >= bytes.len() {
            return Err(err(
                "the file ends before the DATA line that closes the header".into(),
            ));
        }
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        let line = std::str::from_utf8(&bytes[pos..end])
            .map_err(|_| err("not text; is this a PCD file?".into()))?;
        pos = (end + 1).min(bytes.len());
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut tokens = line.split_whitespace();
        let key = tokens.next().unwrap_or_default().to_ascii_uppercase();
        let rest: Vec<&str> = tokens.collect();
        let usizes = |what: &str| -> Result<Vec<usize>, ScanError> {
            rest.iter()
                .map(|t| {
                    t.parse::<usize>()
                        .map_err(|_| err(format!("{what}: '{t}' is not a non-negative integer")))
                })
                .collect()
        };
        let one = |what: &str| -> Result<usize, ScanError> {
            match usizes(what)?.as_slice() {
                [v] => Ok(*v),
                _ => Err(err(format!(
                    "{what} takes one integer, found {}",
                    rest.len()
                ))),
            }
        };
        match key.as_str() {
            "VERSION" | "VIEWPOINT" => {}
            "FIELDS" | "COLUMNS" => fields = Some(rest.iter().map(|s| s.to_string()).collect()),
            "SIZE" => sizes = Some((line_no, usizes("SIZE")?)),
            "COUNT" => counts = Some((line_no, usizes("COUNT")?)),
            "TYPE" => {
                let k = rest
                    .iter()
                    .map(|t| match t.to_ascii_uppercase().as_str() {
                        "F" => Ok(Kind::F),
                        "I" => Ok(Kind::I),
                        "U" => Ok(Kind::U),
                        _ => Err(err(format!("TYPE '{t}': expected F, I or U"))),
                    })
                    .collect::<Result<_, _>>()?;
                kinds = Some((line_no, k));
            }
            "WIDTH" => width = Some(one("WIDTH")?),
            "HEIGHT" => height = Some(one("HEIGHT")?),
            "POINTS" => points = Some((line_no, one("POINTS")?)),
            "DATA" => {
                let data = match rest.as_slice() {
                    [d] => d.to_ascii_lowercase(),
                    _ => return Err(err("DATA takes one word (ascii or binary)".into())),
                };
                let fields = fields.ok_or_else(|| err("no FIELDS line before DATA".into()))?;
                let n = fields.len();
                let check_len = |what: &str, line: usize, len: usize| {
                    if len == n {
                        Ok(())
                    } else {
                        Err(ScanError::PcdHeader {
                            path: path.to_path_buf(),
                            line,
                            problem: format!("{what} has {len} entries for {n} FIELDS"),
                        })
                    }
                };
                let (size_line, sizes) =
                    sizes.ok_or_else(|| err("no SIZE line before DATA".into()))?;
                check_len("SIZE", size_line, sizes.len())?;
                let (type_line, kinds) =
                    kinds.ok_or_else(|| err("no TYPE line before DATA".into()))?;
                check_len("TYPE", type_line, kinds.len())?;
                let counts = match counts {
                    Some((count_line, c)) => {
                        check_len("COUNT", count_line, c.len())?;
                        c
                    }
                    None => vec![1; n],
                };
                let mut types = Vec::with_capacity(n);
                for (i, (&kind, &size)) in kinds.iter().zip(&sizes).enumerate() {
                    let ok = match kind {
                        Kind::F => matches!(size, 4 | 8),
                        Kind::I | Kind::U => matches!(size, 1 | 2 | 4 | 8),
                    };
                    if !ok {
                        return Err(ScanError::PcdHeader {
                            path: path.to_path_buf(),
                            line: size_line,
                            problem: format!(
                                "field {} has TYPE {kind:?} with SIZE {size}; F takes 4 or 8, \
                                 I and U take 1, 2, 4 or 8",
                                fields[i]
                            ),
                        });
                    }
                    types.push(FieldType { kind, size });
                }
                let from_dims = match (width, height) {
                    (Some(w), Some(h)) => Some(w.checked_mul(h).ok_or_else(|| {
                        err(format!("WIDTH {w} x HEIGHT {h} is too large a point count"))
                    })?),
                    (Some(w), None) => Some(w),
                    _ => None,
                };
                let points = match (points, from_dims) {
                    (Some((_, p)), Some(d)) if p != d => {
                        return Err(ScanError::PcdHeader {
                            path: path.to_path_buf(),
                            line: points.map_or(line_no, |(l, _)| l),
                            problem: format!("POINTS {p} disagrees with WIDTH x HEIGHT = {d}"),
                        });
                    }
                    (Some((_, p)), _) => p,
                    (None, Some(d)) => d,
                    (None, None) => {
                        return Err(err("neither POINTS nor WIDTH given before DATA".into()));
                    }
                };
                return Ok(Header {
                    fields,
                    types,
                    counts,
                    points,
                    data,
                    data_offset: pos,
                    data_line: line_no,
                });
            }
            other => {
                return Err(err(format!(
                    "unknown header keyword '{other}'; is this a PCD file?"
                )));
            }
        }
    }
}
