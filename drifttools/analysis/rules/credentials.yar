// Credential dumping scripts: reading password hashes, cloud keys and browser stores in bulk.
// False positives: backup scripts that copy /etc/shadow; configuration-management agents.

rule credential_dumping_script : credentials
{
    meta:
        description = "A script that collects shadow hashes, SSH keys and cloud credentials"
        severity = "high"
        attack = "T1003.008"
        fp = "backup jobs and configuration management"
    strings:
        $s1 = "/etc/shadow" ascii
        $s2 = "unshadow" ascii
        $s3 = "id_rsa" ascii
        $s4 = ".aws/credentials" ascii
        $s5 = ".docker/config.json" ascii
        $s6 = "mimipenguin" nocase
        $s7 = "lazagne" nocase
        $s8 = ".kube/config" ascii
        $s9 = "/proc/self/environ" ascii
    condition:
        filesize < 1MB and 3 of them
}
