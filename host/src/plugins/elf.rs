//! Completeness check of a library file before it is mapped: dlopen of a truncated ELF object kills
//! the process with SIGBUS (docs/architecture.md §4), so every table and loadable segment must lie inside the file.

/// Checks that `bytes` is a complete ELF shared object; the error says what is missing.
pub(crate) fn check_complete(bytes: &[u8]) -> Result<(), String> {
    let len = bytes.len() as u64;
    if len < 16 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file (no \\x7fELF magic)".into());
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let little = match bytes[5] {
        1 => true,
        2 => false,
        e => return Err(format!("unknown ELF data encoding {e}")),
    };
    let r = Reader { bytes, little };
    let field = |off32: usize, off64: usize, size32: usize| -> Result<u64, String> {
        if wide {
            r.uint(off64, if size32 == 4 { 8 } else { size32 })
        } else {
            r.uint(off32, size32)
        }
    };
    let e_type = r.uint(16, 2)?;
    if e_type != 3 {
        return Err(format!("ELF type {e_type} is not a shared object (ET_DYN)"));
    }
    let phoff = field(28, 32, 4)?;
    let shoff = field(32, 40, 4)?;
    let phentsize = field(42, 54, 2)?;
    let phnum = field(44, 56, 2)?;
    let shentsize = field(46, 58, 2)?;
    let shnum = field(48, 60, 2)?;
    let inside = |what: &str, off: u64, size: u64| -> Result<(), String> {
        match off.checked_add(size) {
            Some(end) if end <= len => Ok(()),
            _ => Err(format!(
                "truncated: {what} ends at byte {} but the file has {len}",
                off.saturating_add(size)
            )),
        }
    };
    inside("program header table", phoff, phentsize.saturating_mul(phnum))?;
    if shnum > 0 {
        inside("section header table", shoff, shentsize.saturating_mul(shnum))?;
    }
    for i in 0..phnum {
        let base = phoff + i * phentsize;
        let base = usize::try_from(base).map_err(|_| "program header offset overflows".to_owned())?;
        let p_type = r.uint(base, 4)?;
        const PT_LOAD: u64 = 1;
        if p_type != PT_LOAD {
            continue;
        }
        let (p_offset, p_filesz) = if wide {
            (r.uint(base + 8, 8)?, r.uint(base + 32, 8)?)
        } else {
            (r.uint(base + 4, 4)?, r.uint(base + 16, 4)?)
        };
        inside("a loadable segment", p_offset, p_filesz)?;
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn uint(&self, offset: usize, size: usize) -> Result<u64, String> {
        let raw = offset
            .checked_add(size)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(|| format!("truncated: ELF header field at byte {offset} is past the end"))?;
        let mut v: u64 = 0;
        for i in 0..size {
            let b = if self.little { raw[size - 1 - i] } else { raw[i] };
            v = (v << 8) | u64::from(b);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_executable() -> Vec<u8> {
        // The test binary is a PIE: an ET_DYN ELF object like a plugin.
        std::fs::read(std::env::current_exe().expect("exe path")).expect("read self")
    }

    #[test]
    fn a_complete_object_passes() {
        check_complete(&own_executable()).expect("complete");
    }

    #[test]
    fn every_truncation_is_caught() {
        let full = own_executable();
        for cut in [0, 3, 16, 63, 1000, full.len() / 2, full.len() * 9 / 10, full.len() - 1] {
            assert!(check_complete(&full[..cut]).is_err(), "cut at {cut} passed");
        }
    }

    #[test]
    fn garbage_is_not_elf() {
        assert!(check_complete(b"hello, this is not a library at all")
            .unwrap_err()
            .contains("not an ELF"));
    }
}
