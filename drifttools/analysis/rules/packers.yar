// Packers: executables compressed to hide what they are.
// False positives: vendors that ship UPX-packed binaries (some Go tools, old installers).

rule upx_packed_elf : packer
{
    meta:
        description = "An ELF file packed with UPX (UPX! marker and its stub string)"
        severity = "medium"
        attack = "T1027.002"
        fp = "legitimately UPX-packed tools"
    strings:
        $magic = "UPX!"
        $stub = "$Info: This file is packed with the UPX executable packer" ascii
        $sec0 = "UPX0"
        $sec1 = "UPX1"
    condition:
        uint32(0) == 0x464c457f and ($magic in (0..4096)) and ($stub or all of ($sec*))
}
