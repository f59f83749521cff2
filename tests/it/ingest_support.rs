//! Helpers of the ingest tests: a byte-exact HTTP client (images are not
//! text), multipart bodies, generated test images (with EXIF orientation and
//! a GPS position, or lying about their size), and probes of what the
//! platform stored (objects on disk, the event stream's last sequence).

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{Session, TestGateway};

/// A response with its body as bytes.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request, `Connection: close`, body sent and received as bytes.
pub(crate) async fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413) and close before reading the whole body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers within 60 s");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked") {
        body = dechunk(&body);
    }
    RawResponse { status, headers, body }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

/// A `multipart/form-data` body: text fields, then the file part.
pub(crate) fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "gps-test-boundary-7c1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some((file_name, content_type, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads `file` to `path` as `session`.
pub(crate) async fn upload(
    gateway: &TestGateway,
    session: &Session,
    path: &str,
    fields: &[(&str, &str)],
    file: (&str, &str, &[u8]),
) -> RawResponse {
    let (content_type, body) = multipart(fields, Some(file));
    let mut headers = session.headers();
    headers.push(("Content-Type", content_type.as_str()));
    raw_request(gateway.port, "POST", path, &headers, &body).await
}

/// A `width`×`height` picture with a diagonal gradient in `tint`, so it has
/// structure (a perceptual hash) and a dominant colour.
pub(crate) fn picture(width: u32, height: u32, tint: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let shade = ((x + y) * 255 / (width + height)) as u8 / 4;
        image::Rgb([
            tint[0].saturating_add(shade),
            tint[1].saturating_add(shade),
            tint[2].saturating_add(shade),
        ])
    })
}

pub(crate) fn png_of(image: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

pub(crate) fn jpeg_of(image: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).expect("jpeg");
    out.into_inner()
}

/// A JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6)
/// and carries a GPS position (latitude N 48° 51′ 29″, the Eiffel tower).
pub(crate) fn jpeg_with_exif(image: &image::RgbImage) -> Vec<u8> {
    let jpeg = jpeg_of(image);
    // TIFF, big-endian: header, IFD0 (orientation, GPS IFD pointer), GPS IFD
    // (latitude ref "N", latitude 48/1 51/1 29/1).
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0*\0\0\0\x08");
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    let gps_ifd_offset: u32 = 8 + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1]);
    tiff.extend_from_slice(&gps_ifd_offset.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let rationals_offset: u32 = gps_ifd_offset + 2 + 2 * 12 + 4;
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&[0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&[0x00, 0x02, 0, 5, 0, 0, 0, 3]);
    tiff.extend_from_slice(&rationals_offset.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    for value in [48u32, 51, 29] {
        tiff.extend_from_slice(&value.to_be_bytes());
        tiff.extend_from_slice(&1u32.to_be_bytes());
    }
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A tiny PNG whose header claims `width`×`height` pixels (with a valid CRC,
/// so only the size gives it away): a "pixel flood".
pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_of(&picture(1, 1, [10, 20, 30]));
    // IHDR data starts at byte 16 (8 signature + 4 length + 4 type).
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// Every object file the embedded store holds (its bucket folder, recursively).
pub(crate) fn stored_objects(storage_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&storage_dir.join("gps"), &mut out);
    out.sort();
    out
}

/// The event stream's last sequence: unchanged means no event was written.
pub(crate) async fn last_sequence(gateway: &TestGateway) -> u64 {
    let name = gateway.state.log.settings().name.clone();
    let mut stream = gateway.state.log.jetstream().get_stream(&name).await.expect("stream");
    stream.info().await.expect("info").state.last_sequence
}

/// Creates brand `brand` (owner `owner`) with product `p1`; returns the session.
pub(crate) async fn brand_with_product(gateway: &TestGateway, brand: &str, owner: &str) -> Session {
    let session = gateway.brand_with_owner(brand, owner).await;
    let created = gateway
        .as_user(
            &session,
            "POST",
            &format!("/api/v1/brands/{brand}/products"),
            Some(crate::gateway::product("p1")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    session
}
