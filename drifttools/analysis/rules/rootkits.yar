// LD_PRELOAD rootkits: libraries that hook libc to hide files, processes and connections.
// False positives: profilers and debugging shims (libfaketime, jemalloc preload).

rule ld_preload_rootkit : rootkit
{
    meta:
        description = "A shared object hooking readdir/fopen to hide things, or naming ld.so.preload"
        severity = "critical"
        attack = "T1574.006"
        fp = "tracing and sandboxing shims"
    strings:
        $preload = "/etc/ld.so.preload" ascii
        $dlsym = "dlsym" ascii
        $h1 = "readdir64" ascii
        $h2 = "readdir" ascii
        $h3 = "fopen64" ascii
        $h4 = "/proc/net/tcp" ascii
        $hide1 = "process_to_filter" ascii
        $hide2 = "libprocesshider" ascii
        $hide3 = "HIDE_THIS_SHELL" ascii
    condition:
        uint32(0) == 0x464c457f and $dlsym and (any of ($hide*) or ($preload and 2 of ($h*)))
}

rule ld_preload_file_entries : rootkit
{
    meta:
        description = "ld.so.preload entries pointing into writable or hidden places"
        severity = "critical"
        attack = "T1574.006"
        fp = "none known for writable paths"
    strings:
        $p = /(^|\n)[ \t]*\/(tmp|var\/tmp|dev\/shm|run)\/[^\n]*\.so/
        $h = /(^|\n)[ \t]*\/[^\n]*\/\.[^\/\n]+\.so/
    condition:
        filesize < 64KB and ($p or $h)
}
