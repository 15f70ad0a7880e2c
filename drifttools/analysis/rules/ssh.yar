// SSH authorized_keys backdoors: forced commands and keys that run payloads on login.
// False positives: restricted deploy keys with command= (check the command).

rule ssh_authorized_keys_backdoor : ssh
{
    meta:
        description = "authorized_keys line whose forced command fetches or runs a payload"
        severity = "high"
        attack = "T1098.004"
        fp = "deploy keys with an intended forced command"
    strings:
        $key = /(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp[0-9]{3}) AAAA/
        $cmd = /command="[^"]{0,200}(curl|wget|\/dev\/tcp|[ ;|&]nc |bash -i|base64 -d|\/tmp\/|\/dev\/shm\/)/
    condition:
        $key and $cmd
}

rule ssh_key_known_attacker_comment : ssh
{
    meta:
        description = "authorized_keys entries with comments mining and botnet campaigns use"
        severity = "high"
        attack = "T1098.004"
        fp = "a user who named a key like this"
    strings:
        $key = /(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp[0-9]{3}) AAAA[0-9A-Za-z+\/=]{16,}/
        $c1 = " mdrfckr" ascii
        $c2 = " redis@" ascii
        $c3 = " root@kinsing" ascii
        $c4 = " teamtnt" nocase
    condition:
        $key and any of ($c*)
}
