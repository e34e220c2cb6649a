//! The QR image of a payment code, as PNG and SVG. The symbol comes from `qrcodegen`
//! (error correction M, as bank apps read best from a phone screen); the images are written
//! here: a PNG is a 1-bit greyscale image in stored (uncompressed) deflate blocks — a few
//! kilobytes, and nothing to go wrong — and an SVG is one path.

use qrcodegen::{QrCode, QrCodeEcc};

/// Modules of white around the symbol (the QR standard's quiet zone).
const QUIET: usize = 4;

/// The symbol of `payload`: its side in modules and its dark modules, row by row.
pub fn modules(payload: &str) -> Result<(usize, Vec<bool>), String> {
    let code = QrCode::encode_text(payload, QrCodeEcc::Medium)
        .map_err(|_| "the payload is too long for a QR code".to_owned())?;
    let n = usize::try_from(code.size()).unwrap_or(0);
    let mut dark = Vec::with_capacity(n * n);
    for y in 0..code.size() {
        for x in 0..code.size() {
            dark.push(code.get_module(x, y));
        }
    }
    Ok((n, dark))
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for p in parts {
        for &b in *p {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// The zlib stream of `raw` in stored blocks.
fn zlib_stored(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if raw.is_empty() {
        vec![&[]]
    } else {
        raw.chunks(65_535).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(raw).to_be_bytes());
    out
}

/// A PNG of `payload`'s symbol, `scale` pixels a module, with the quiet zone.
pub fn png(payload: &str, scale: usize) -> Result<Vec<u8>, String> {
    let (n, dark) = modules(payload)?;
    let scale = scale.clamp(1, 32);
    let side = (n + 2 * QUIET) * scale;
    let row_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity(side * (row_bytes + 1));
    for py in 0..side {
        raw.push(0); // filter: none
        let my = (py / scale).checked_sub(QUIET).filter(|&m| m < n);
        let mut byte = 0u8;
        for px in 0..side {
            let mx = (px / scale).checked_sub(QUIET).filter(|&m| m < n);
            let is_dark = matches!((mx, my), (Some(x), Some(y)) if dark[y * n + x]);
            // Greyscale 1-bit: 1 is white.
            byte = (byte << 1) | u8::from(!is_dark);
            if px % 8 == 7 {
                raw.push(byte);
                byte = 0;
            }
        }
        if !side.is_multiple_of(8) {
            raw.push(byte << (8 - side % 8));
        }
    }
    let side32 = u32::try_from(side).map_err(|_| "image too large".to_owned())?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // bit depth 1, greyscale, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// An SVG of `payload`'s symbol: one path of unit squares, scalable to any size.
pub fn svg(payload: &str) -> Result<String, String> {
    let (n, dark) = modules(payload)?;
    let side = n + 2 * QUIET;
    let mut path = String::new();
    for y in 0..n {
        for x in 0..n {
            if dark[y * n + x] {
                path.push_str(&format!("M{},{}h1v1h-1z", x + QUIET, y + QUIET));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "00020101021238560010A0000007270126000697041501121133666688880208QRIBFTTA530370454062500005802VN62350112HD20240001230815VP HD202400012363042EC7";

    /// Reads a PNG with the `png` crate and its QR code with `rqrr`: decoders written by others.
    fn read_back(png_bytes: &[u8]) -> String {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).expect("a frame");
        let (w, h) = (frame.width as usize, frame.height as usize);
        let stride = frame.line_size;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * stride + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        grids[0].decode().expect("the QR code decodes").1
    }

    #[test]
    fn the_png_decodes_to_exactly_its_payload() {
        for scale in [4, 7, 8] {
            let bytes = png(PAYLOAD, scale).unwrap();
            assert_eq!(read_back(&bytes), PAYLOAD, "scale {scale}");
        }
        let v1 = "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E";
        assert_eq!(read_back(&png(v1, 6).unwrap()), v1);
    }

    #[test]
    fn the_svg_draws_the_same_symbol() {
        let s = svg(PAYLOAD).unwrap();
        let (n, dark) = modules(PAYLOAD).unwrap();
        assert!(s.starts_with("<svg") && s.contains(&format!("viewBox=\"0 0 {0} {0}\"", n + 8)));
        assert_eq!(s.matches('z').count(), dark.iter().filter(|d| **d).count());
    }
}
