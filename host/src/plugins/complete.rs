//! Completeness check of a library file before it is mapped: dlopen of a truncated library kills
//! the process with SIGBUS (docs/architecture.md §4: the loader maps segments past the end of the file and the
//! first touch of such a page faults), so every header table, loadable segment and section with
//! file contents must lie inside the file. The `object` crate reads ELF (`.so`), PE (`.dll`) and
//! Mach-O (`.dylib`, also universal) alike, so every platform gets the same check.

use object::pe::{ImageNtHeaders32, ImageNtHeaders64};
use object::read::macho::{FatArch, MachHeader, MachOFatFile32, MachOFatFile64};
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile};
use object::read::{File, FileKind, Object, ObjectSection, ObjectSegment};
use object::{macho, Endianness, LittleEndian as LE, ObjectKind};

/// Checks that `bytes` is a complete shared library; the error says what is missing.
pub(crate) fn check_complete(bytes: &[u8]) -> Result<(), String> {
    let kind = match FileKind::parse(bytes) {
        Ok(kind) => kind,
        Err(e) if bytes.len() < 16 || bytes.starts_with(b"MZ") => {
            return Err(format!("truncated or damaged: {e} ({} bytes)", bytes.len()))
        }
        Err(_) => {
            return Err("not a library (not an ELF file, a PE image or a Mach-O file: unknown magic bytes)".into())
        }
    };
    match kind {
        FileKind::MachOFat32 => {
            let fat =
                MachOFatFile32::parse(bytes).map_err(|e| format!("truncated or damaged universal Mach-O: {e}"))?;
            check_arches(bytes, fat.arches())
        }
        FileKind::MachOFat64 => {
            let fat =
                MachOFatFile64::parse(bytes).map_err(|e| format!("truncated or damaged universal Mach-O: {e}"))?;
            check_arches(bytes, fat.arches())
        }
        _ => check_image(bytes, kind),
    }
}

/// Every architecture of a universal (fat) Mach-O file lies inside it and is complete itself.
fn check_arches(bytes: &[u8], arches: &[impl FatArch]) -> Result<(), String> {
    for (i, arch) in arches.iter().enumerate() {
        let (offset, size) = arch.file_range();
        inside(
            bytes.len(),
            &format!("architecture {i} of the universal file"),
            offset,
            size,
        )?;
        let image = arch
            .data(bytes)
            .map_err(|e| format!("truncated or damaged universal Mach-O: {e}"))?;
        let kind = FileKind::parse(image).map_err(|e| format!("architecture {i}: {e}"))?;
        check_image(image, kind).map_err(|e| format!("architecture {i}: {e}"))?;
    }
    Ok(())
}

/// One ELF, PE or Mach-O image: its header tables, then every segment and section with file
/// contents. `object`'s generic reader is strict about ELF's program and section header tables
/// but lenient where a debugger wants it to be (a Mach-O load command table past the end is
/// skipped, a PE section counts only up to its virtual size), so those two get a strict look
/// through their own readers first.
fn check_image(bytes: &[u8], kind: FileKind) -> Result<(), String> {
    let format = match kind {
        FileKind::Elf32 | FileKind::Elf64 => "ELF",
        FileKind::Pe32 | FileKind::Pe64 => "PE",
        FileKind::MachO32 | FileKind::MachO64 => "Mach-O",
        other => return Err(format!("not a shared library: a {other:?} file")),
    };
    let damaged = |e: object::Error| format!("truncated or damaged {format} file of {} bytes: {e}", bytes.len());
    match kind {
        FileKind::Pe32 => check_pe_raw_data::<ImageNtHeaders32>(bytes)?,
        FileKind::Pe64 => check_pe_raw_data::<ImageNtHeaders64>(bytes)?,
        FileKind::MachO32 => check_load_commands::<macho::MachHeader32<Endianness>>(bytes).map_err(damaged)?,
        FileKind::MachO64 => check_load_commands::<macho::MachHeader64<Endianness>>(bytes).map_err(damaged)?,
        _ => {}
    }
    let file = File::parse(bytes).map_err(damaged)?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(format!(
            "{format} file of kind {:?} is not a shared library",
            file.kind()
        ));
    }
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        let name = segment.name().ok().flatten().unwrap_or("");
        inside(bytes.len(), &format!("{format} segment {name:?}"), offset, size)?;
    }
    for section in file.sections() {
        if let Some((offset, size)) = section.file_range() {
            let name = section.name().unwrap_or("");
            inside(bytes.len(), &format!("{format} section {name:?}"), offset, size)?;
        }
    }
    Ok(())
}

/// The headers the PE loader maps (`SizeOfHeaders`) and each section's whole raw data.
fn check_pe_raw_data<Pe: ImageNtHeaders>(bytes: &[u8]) -> Result<(), String> {
    let file = PeFile::<Pe>::parse(bytes).map_err(|e| format!("truncated or damaged PE file: {e}"))?;
    let headers = file.nt_headers().optional_header().size_of_headers();
    inside(bytes.len(), "PE headers", 0, headers.into())?;
    for section in file.section_table().iter() {
        let name = String::from_utf8_lossy(section.raw_name());
        let (offset, size) = (section.pointer_to_raw_data.get(LE), section.size_of_raw_data.get(LE));
        inside(bytes.len(), &format!("PE section {name:?}"), offset.into(), size.into())?;
    }
    Ok(())
}

/// The whole load command table, each command within it.
fn check_load_commands<Mach: MachHeader<Endian = Endianness>>(bytes: &[u8]) -> object::Result<()> {
    let header = Mach::parse(bytes, 0)?;
    let mut commands = header.load_commands(header.endian()?, bytes, 0)?;
    while commands.next()?.is_some() {}
    Ok(())
}

fn inside(len: usize, what: &str, offset: u64, size: u64) -> Result<(), String> {
    match offset.checked_add(size) {
        Some(end) if end <= len as u64 => Ok(()),
        _ => Err(format!(
            "truncated: {what} ends at byte {} but the file has {len}",
            offset.saturating_add(size)
        )),
    }
}

#[cfg(test)]
mod tests;
