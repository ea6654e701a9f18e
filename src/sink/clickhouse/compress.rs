//! ClickHouse's own compressed-block framing, used for request bodies sent with `decompress=1`.
//!
//! This is the format of the native protocol and of `decompress=1` on the HTTP interface, and it
//! is understood by every server from 1.1 to today (HTTP `Content-Encoding: lz4` is not: 18.16
//! rejects it). Each block is:
//!
//! ```text
//! [16] checksum: CityHash128 v1.0.2 of the rest of the block, as cityhash-rs's u128: high 64 bits
//!      then low 64 bits, each little-endian (verified against 18.16's CHECKSUM_DOESNT_MATCH report)
//! [ 1] method: 0x82 = LZ4, 0x02 = none
//! [ 4] compressed size, little-endian: the 9 header bytes plus the payload
//! [ 4] uncompressed size, little-endian
//! [..] payload: one raw LZ4 block (no frame) or the raw bytes
//! ```
//!
//! Input is cut into blocks of [`BLOCK_BYTES`] uncompressed bytes (the server's own buffer
//! size). The output is a pure function of the input, so a retry resends identical bytes.

/// Uncompressed bytes per block (ClickHouse's `DBMS_DEFAULT_BUFFER_SIZE`).
pub const BLOCK_BYTES: usize = 1 << 20;
/// Method byte of an LZ4 block.
pub const METHOD_LZ4: u8 = 0x82;
/// Method byte of an uncompressed (checksummed only) block.
pub const METHOD_NONE: u8 = 0x02;
const CHECKSUM_BYTES: usize = 16;
const HEADER_BYTES: usize = 9;

/// Frames `data` as ClickHouse compressed blocks, LZ4 when `lz4`, else stored (checksum only).
pub fn compress(data: &[u8], lz4: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    compress_into(&mut out, data, lz4);
    out
}

/// [`compress`], appending the blocks to `out` (a batch sealing block by block compresses into
/// its body directly, with no buffer per block).
pub fn compress_into(out: &mut Vec<u8>, data: &[u8], lz4: bool) {
    for chunk in data.chunks(BLOCK_BYTES) {
        let start = out.len();
        out.extend_from_slice(&[0u8; CHECKSUM_BYTES + HEADER_BYTES]);
        let method = if lz4 {
            let bound = lz4_flex::block::get_maximum_output_size(chunk.len());
            let payload_at = out.len();
            out.resize(payload_at + bound, 0);
            let n = lz4_flex::block::compress_into(chunk, &mut out[payload_at..])
                .expect("the buffer has the maximum output size");
            out.truncate(payload_at + n);
            METHOD_LZ4
        } else {
            out.extend_from_slice(chunk);
            METHOD_NONE
        };
        let compressed = (out.len() - start - CHECKSUM_BYTES) as u32;
        let header = &mut out[start + CHECKSUM_BYTES..start + CHECKSUM_BYTES + HEADER_BYTES];
        header[0] = method;
        header[1..5].copy_from_slice(&compressed.to_le_bytes());
        header[5..9].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
        let hash = cityhash_rs::cityhash_102_128(&out[start + CHECKSUM_BYTES..]);
        out[start..start + 16].copy_from_slice(&checksum_bytes(hash));
    }
}

fn checksum_bytes(hash: u128) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&((hash >> 64) as u64).to_le_bytes());
    b[8..].copy_from_slice(&(hash as u64).to_le_bytes());
    b
}

/// Reverses [`compress`]; `None` when the framing, a checksum or a block is broken. Used by
/// tests and to check what would be sent.
pub fn decompress(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < CHECKSUM_BYTES + HEADER_BYTES {
            return None;
        }
        let compressed = u32::from_le_bytes(data[17..21].try_into().ok()?) as usize;
        let raw = u32::from_le_bytes(data[21..25].try_into().ok()?) as usize;
        let end = CHECKSUM_BYTES.checked_add(compressed)?;
        if compressed < HEADER_BYTES || data.len() < end {
            return None;
        }
        let hash = cityhash_rs::cityhash_102_128(&data[CHECKSUM_BYTES..end]);
        if data[..16] != checksum_bytes(hash) {
            return None;
        }
        let payload = &data[CHECKSUM_BYTES + HEADER_BYTES..end];
        match data[16] {
            METHOD_LZ4 => out.extend(lz4_flex::block::decompress(payload, raw).ok()?),
            METHOD_NONE if payload.len() == raw => out.extend_from_slice(payload),
            _ => return None,
        }
        data = &data[end..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_blocks_round_trip_across_block_boundaries() {
        let data: Vec<u8> = (0..(BLOCK_BYTES * 2 + 12_345))
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        for lz4 in [true, false] {
            let framed = compress(&data, lz4);
            assert_eq!(decompress(&framed).unwrap(), data);
            assert_eq!(compress(&data, lz4), framed, "deterministic");
        }
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut framed = compress(b"hello hello hello hello", true);
        let last = framed.len() - 1;
        framed[last] ^= 1;
        assert!(decompress(&framed).is_none());
    }

    #[test]
    fn empty_input_is_empty_output() {
        assert!(compress(&[], true).is_empty());
    }
}
