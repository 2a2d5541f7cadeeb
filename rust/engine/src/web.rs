//! The hooks the shim's web platform natives call (`cpp/web.h`): WHATWG URL parsing and
//! setters (the `url` crate's `quirks` module, which implements the URL Standard's API),
//! UTF-8 decoding as the Encoding Standard specifies it (Rust's own decoder: one U+FFFD per
//! maximal invalid subpart) and SHA digests (`sha1`, `sha2`).

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};

use sha2::Digest;
use url::{quirks, Url};

use crate::ffi;

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
}

/// Copies `bytes` into a malloc'd buffer the shim frees.
unsafe fn give(bytes: &[u8], out: *mut ffi::mv8_buffer) {
    let data = malloc(bytes.len().max(1)) as *mut u8;
    if data.is_null() {
        (*out).data = std::ptr::null_mut();
        (*out).len = 0;
        return;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
    (*out).data = data;
    (*out).len = bytes.len();
}

unsafe fn text<'a>(data: *const c_char, len: usize) -> std::borrow::Cow<'a, str> {
    if data.is_null() || len == 0 {
        return std::borrow::Cow::Borrowed("");
    }
    String::from_utf8_lossy(std::slice::from_raw_parts(data as *const u8, len))
}

/// The parts the shim expects, NUL-terminated, in its order.
fn parts(url: &Url) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [
        quirks::href(url),
        &quirks::origin(url),
        quirks::protocol(url),
        quirks::username(url),
        quirks::password(url),
        quirks::host(url),
        quirks::hostname(url),
        quirks::port(url),
        quirks::pathname(url),
        quirks::search(url),
        quirks::hash(url),
    ] {
        out.extend_from_slice(part.replace('\0', "").as_bytes());
        out.push(0);
    }
    out
}

unsafe extern "C" fn url_parse(
    input: *const c_char,
    input_len: usize,
    base: *const c_char,
    base_len: usize,
    out: *mut ffi::mv8_buffer,
) -> c_int {
    let input = text(input, input_len);
    let parsed = if base.is_null() {
        Url::parse(&input)
    } else {
        match Url::parse(&text(base, base_len)) {
            Ok(base) => base.join(&input),
            Err(e) => Err(e),
        }
    };
    match parsed {
        Ok(url) => {
            give(&parts(&url), out);
            1
        }
        Err(_) => 0,
    }
}

unsafe extern "C" fn url_set(
    href: *const c_char,
    href_len: usize,
    part: c_int,
    value: *const c_char,
    value_len: usize,
    out: *mut ffi::mv8_buffer,
) -> c_int {
    let Ok(mut url) = Url::parse(&text(href, href_len)) else {
        return 0;
    };
    let value = text(value, value_len);
    // The URL Standard's setters ignore a value they cannot apply; href's throws (the JS side
    // turns a failed href into a TypeError before calling here).
    match part {
        0 => {
            let _ = quirks::set_href(&mut url, &value);
        }
        2 => {
            let _ = quirks::set_protocol(&mut url, &value);
        }
        3 => {
            let _ = quirks::set_username(&mut url, &value);
        }
        4 => {
            let _ = quirks::set_password(&mut url, &value);
        }
        5 => {
            let _ = quirks::set_host(&mut url, &value);
        }
        6 => {
            let _ = quirks::set_hostname(&mut url, &value);
        }
        7 => {
            let _ = quirks::set_port(&mut url, &value);
        }
        8 => quirks::set_pathname(&mut url, &value),
        9 => quirks::set_search(&mut url, &value),
        10 => quirks::set_hash(&mut url, &value),
        _ => {}
    }
    give(&parts(&url), out);
    1
}

unsafe extern "C" fn utf8_decode(
    data: *const u8,
    len: usize,
    fatal: c_int,
    stream: c_int,
    out: *mut ffi::mv8_buffer,
    consumed: *mut usize,
) -> c_int {
    let bytes = if len == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(data, len)
    };
    // With `stream`, an incomplete sequence at the very end waits for the next chunk.
    let mut end = bytes.len();
    if stream != 0 {
        if let Err(e) = std::str::from_utf8(bytes) {
            if e.error_len().is_none() {
                end = e.valid_up_to();
            } else {
                // An invalid sequence earlier: the tail may still be incomplete.
                let tail_start = bytes.len().saturating_sub(3);
                for start in (tail_start..bytes.len()).rev() {
                    if bytes[start] & 0xC0 != 0x80 {
                        if std::str::from_utf8(&bytes[start..])
                            .err()
                            .is_some_and(|e| e.error_len().is_none() && e.valid_up_to() == 0)
                        {
                            end = start;
                        }
                        break;
                    }
                }
            }
        }
    }
    let chunk = &bytes[..end];
    *consumed = end;
    if fatal != 0 {
        match std::str::from_utf8(chunk) {
            Ok(s) => give(s.as_bytes(), out),
            Err(_) => return 0,
        }
    } else {
        give(String::from_utf8_lossy(chunk).as_bytes(), out);
    }
    1
}

unsafe extern "C" fn digest(algorithm: c_int, data: *const u8, len: usize, out: *mut u8) -> usize {
    let bytes = if len == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(data, len)
    };
    let result: Vec<u8> = match algorithm {
        1 => sha1::Sha1::digest(bytes).to_vec(),
        256 => sha2::Sha256::digest(bytes).to_vec(),
        384 => sha2::Sha384::digest(bytes).to_vec(),
        512 => sha2::Sha512::digest(bytes).to_vec(),
        _ => return 0,
    };
    std::ptr::copy_nonoverlapping(result.as_ptr(), out, result.len());
    result.len()
}

/// Hands the hooks to the shim; called once, before V8 is initialised.
pub(crate) fn install() {
    static FETCH_OFF: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    let fetch_off =
        FETCH_OFF.get_or_init(|| std::ffi::CString::new(crate::fetch::FETCH_OFF).expect("no NUL"));
    let hooks = ffi::mv8_hooks {
        fetch_off: fetch_off.as_ptr(),
        url_parse: Some(url_parse),
        url_set: Some(url_set),
        utf8_decode: Some(utf8_decode),
        digest: Some(digest),
    };
    unsafe { ffi::mv8_set_hooks(&hooks) }
}
