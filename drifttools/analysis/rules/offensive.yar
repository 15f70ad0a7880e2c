// Offensive tooling markers: post-exploitation frameworks and their implants.
// False positives: security tooling images (red teams, scanners) and detection-rule repositories.

rule offensive_framework_markers : tooling
{
    meta:
        description = "Strings of Metasploit/Meterpreter, Sliver, Mimikatz, Cobalt Strike and kin"
        severity = "high"
        attack = "T1588.002"
        fp = "images of security teams; rule repositories"
    strings:
        $a1 = "meterpreter" nocase
        $a2 = "metasploit" nocase
        $a3 = "mimikatz" nocase
        $a4 = "sekurlsa::" ascii
        $a5 = "sliver-client" ascii
        $a6 = "beacon.dll" nocase
        $a7 = "ReflectiveLoader" ascii
        $a8 = "chisel_" ascii
        $a9 = "linpeas" nocase
        $a10 = "pspy64" ascii
    condition:
        2 of them
}
