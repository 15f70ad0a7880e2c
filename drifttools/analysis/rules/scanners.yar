// Network scanners dropped into a container to look around its network.
// False positives: network diagnostics images.

rule network_scanner : scanner
{
    meta:
        description = "masscan, zmap, nmap or pnscan markers"
        severity = "medium"
        attack = "T1046"
        fp = "network diagnostics images"
    strings:
        $masscan1 = "masscan" ascii
        $masscan2 = "--rate" ascii
        $zmap1 = "zmap" ascii
        $zmap2 = "--probe-module" ascii
        $nmap1 = "Nmap scan report for" ascii
        $nmap2 = "nmap-services" ascii
        $pnscan = "pnscan" ascii
    condition:
        ($masscan1 and $masscan2) or ($zmap1 and $zmap2) or ($nmap1 and $nmap2) or
        ($pnscan and $masscan2)
}
