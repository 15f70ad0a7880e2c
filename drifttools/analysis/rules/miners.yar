// Cryptocurrency miners: XMRig-style builds and anything speaking stratum to a pool.
// False positives: monitoring tools or docs that mention stratum URLs; mining-pool software.

rule xmrig_miner : miner
{
    meta:
        description = "XMRig or an XMRig fork: its name with its option and banner strings"
        severity = "critical"
        attack = "T1496"
        fp = "XMRig's own source or packaging inside a build container"
    strings:
        $name = "xmrig" nocase
        $opt1 = "--donate-level" ascii
        $opt2 = "randomx" nocase
        $opt3 = "cpu-max-threads-hint" ascii
        $opt4 = "\"nicehash\"" ascii
        $opt5 = "--coin" ascii
    condition:
        $name and 2 of ($opt*)
}

rule stratum_pool_url : miner
{
    meta:
        description = "A stratum mining-pool URL (stratum+tcp, stratum+ssl, stratum2)"
        severity = "high"
        attack = "T1496"
        fp = "pool configuration of legitimate miners; documentation"
    strings:
        $url = /stratum2?\+(tcp|ssl|tls):\/\/[a-zA-Z0-9._-]{3,}/ nocase
    condition:
        $url
}

rule monero_wallet_and_pool : miner
{
    meta:
        description = "A Monero wallet address next to a pool login"
        severity = "high"
        attack = "T1496"
        fp = "wallet software"
    strings:
        $wallet = /4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}/
        $pool1 = "pool" nocase
        $pool2 = "\"user\"" ascii
    condition:
        $wallet and any of ($pool*)
}
