//! The check on a real ELF library (this test binary, a PIE: an `ET_DYN` object like a plugin) and
//! on a tiny PE DLL, Mach-O dylib and universal Mach-O written here with `object`'s writers, each
//! cut at every length short of whole.

use object::macho;
use object::pe;
use object::write::macho::{DylibCommand, Encoder, MachHeader, SectionHeader, SegmentCommand};
use object::write::pe::{NtHeaders, Writer};
use object::{BigEndian, LittleEndian, U32};

use super::check_complete;

fn own_executable() -> Vec<u8> {
    std::fs::read(std::env::current_exe().expect("exe path")).expect("read self")
}

/// A 64-bit DLL with a `.text` section (one `ret`) and a `.data` section, as a linker lays it out:
/// headers, then each section at a 512-byte boundary.
fn tiny_dll(characteristics: pe::FileFlags) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(true, 0x1000, 0x200, &mut out);
    w.reserve_dos_header_and_stub();
    w.reserve_nt_headers(16);
    w.reserve_section_headers(2);
    let text = w.reserve_text_section(1);
    let data = w.reserve_data_section(8, 8);
    w.write_dos_header_and_stub().expect("dos header");
    w.write_nt_headers(NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_AMD64,
        time_date_stamp: 0,
        characteristics,
        major_linker_version: 14,
        minor_linker_version: 0,
        address_of_entry_point: 0,
        image_base: 0x1_8000_0000,
        major_operating_system_version: 6,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 6,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI,
        dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
        size_of_stack_reserve: 0x10_0000,
        size_of_stack_commit: 0x1000,
        size_of_heap_reserve: 0x10_0000,
        size_of_heap_commit: 0x1000,
    });
    w.write_section_headers();
    w.write_section(text.file_offset, &[0xc3]);
    w.write_section(data.file_offset, b"pmmux\0\0\0");
    out
}

fn dll() -> Vec<u8> {
    tiny_dll(pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE | pe::IMAGE_FILE_DLL)
}

fn name16(name: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..name.len()].copy_from_slice(name);
    out
}

/// An arm64 `MH_DYLIB`: the header, a `__TEXT` segment holding the whole file with a `__text`
/// section (one `ret`), and its `LC_ID_DYLIB` install name.
fn dylib() -> Vec<u8> {
    let enc = Encoder::new(LittleEndian, true);
    let name = b"@rpath/libtiny.dylib";
    let commands = enc.segment_command_size(1) + enc.dylib_command_size(name.len());
    let code_at = (enc.mach_header_size() + commands).next_multiple_of(16);
    let code = [0xc0, 0x03, 0x5f, 0xd6];
    let total = code_at + code.len() as u64;
    let mut out = Vec::new();
    enc.mach_header(
        &mut out,
        &MachHeader {
            cputype: macho::CPU_TYPE_ARM64,
            cpusubtype: macho::CPU_SUBTYPE_ARM64_ALL.into(),
            filetype: macho::MH_DYLIB,
            ncmds: 2,
            sizeofcmds: commands as u32,
            flags: macho::MH_DYLDLINK | macho::MH_TWOLEVEL,
        },
    );
    enc.segment_command(
        &mut out,
        &SegmentCommand {
            segname: name16(b"__TEXT"),
            vmaddr: 0,
            vmsize: 0x4000,
            fileoff: 0,
            filesize: total,
            maxprot: macho::VM_PROT_READ | macho::VM_PROT_EXECUTE,
            initprot: macho::VM_PROT_READ | macho::VM_PROT_EXECUTE,
            nsects: 1,
            flags: Default::default(),
        },
    );
    enc.section_header(
        &mut out,
        &SectionHeader {
            sectname: name16(b"__text"),
            segname: name16(b"__TEXT"),
            addr: code_at,
            size: code.len() as u64,
            offset: code_at as u32,
            align: 2,
            reloff: 0,
            nreloc: 0,
            flags: macho::S_REGULAR | macho::S_ATTR_PURE_INSTRUCTIONS,
            reserved1: 0,
            reserved2: 0,
            reserved3: 0,
        },
    );
    enc.dylib_command(
        &mut out,
        &DylibCommand {
            cmd: macho::LC_ID_DYLIB,
            name,
            timestamp: 0,
            current_version: Default::default(),
            compatibility_version: Default::default(),
        },
    );
    out.resize(code_at as usize, 0);
    out.extend_from_slice(&code);
    assert_eq!(out.len() as u64, total);
    out
}

/// A universal file with the dylib as its one architecture, at a 4 KiB boundary as `lipo` puts it.
fn universal() -> Vec<u8> {
    let thin = dylib();
    let at = 0x1000u32;
    let mut out = Vec::new();
    out.extend_from_slice(object::pod::bytes_of(&macho::FatHeader {
        magic: U32::new(BigEndian, macho::FAT_MAGIC),
        nfat_arch: U32::new(BigEndian, 1),
    }));
    out.extend_from_slice(object::pod::bytes_of(&macho::FatArch32 {
        cputype: U32::new(BigEndian, macho::CPU_TYPE_ARM64),
        cpusubtype: U32::new(BigEndian, macho::CPU_SUBTYPE_ARM64_ALL.into()),
        offset: U32::new(BigEndian, at),
        size: U32::new(BigEndian, thin.len() as u32),
        align: U32::new(BigEndian, 12),
    }));
    out.resize(at as usize, 0);
    out.extend_from_slice(&thin);
    out
}

/// `full` passes, and every shorter prefix in `cuts` is refused.
fn every_cut_is_caught(what: &str, full: &[u8], cuts: impl IntoIterator<Item = usize>) {
    check_complete(full).unwrap_or_else(|e| panic!("the whole {what} was refused: {e}"));
    for cut in cuts {
        match check_complete(&full[..cut]) {
            Ok(()) => panic!("{what} cut to {cut} of {} bytes passed", full.len()),
            Err(e) if cut >= 16 => assert!(e.contains("truncated"), "{what} cut to {cut}: {e}"),
            Err(_) => {}
        }
    }
}

#[test]
fn every_truncation_of_an_elf_library_is_caught() {
    let full = own_executable();
    let n = full.len();
    every_cut_is_caught("ELF", &full, [0, 3, 16, 63, 1000, n / 2, n * 9 / 10, n - 1]);
}

#[test]
fn every_truncation_of_a_dll_is_caught() {
    let full = dll();
    assert!(
        full.len() > 1024,
        "two sections after the headers: {} bytes",
        full.len()
    );
    every_cut_is_caught("DLL", &full, 0..full.len());
}

#[test]
fn every_truncation_of_a_dylib_is_caught() {
    let full = dylib();
    every_cut_is_caught("dylib", &full, 0..full.len());
}

#[test]
fn every_truncation_of_a_universal_dylib_is_caught() {
    let full = universal();
    every_cut_is_caught("universal dylib", &full, 0..full.len());
}

#[test]
fn the_cut_is_named_with_where_the_data_should_end() {
    let full = dll();
    let e = check_complete(&full[..full.len() - 100]).expect_err("cut");
    assert!(e.contains("section \".data\" ends at byte"), "{e}");
    let full = dylib();
    let e = check_complete(&full[..full.len() - 1]).expect_err("cut");
    assert!(e.contains("Mach-O segment \"__TEXT\" ends at byte"), "{e}");
}

#[test]
fn an_executable_is_not_a_library() {
    let exe = tiny_dll(pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE);
    let e = check_complete(&exe).expect_err("an .exe");
    assert!(e.contains("is not a shared library"), "{e}");
}

#[test]
fn garbage_is_not_a_library() {
    let e = check_complete(b"hello, this is not a library at all").expect_err("garbage");
    assert!(e.contains("not an ELF file"), "{e}");
}
