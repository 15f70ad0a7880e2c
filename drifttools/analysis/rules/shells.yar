// Reverse and bind shells: one-liners and the strings compiled shells carry.
// False positives: penetration-testing docs, shell-scripting tutorials inside images.

rule reverse_shell_dev_tcp : shell
{
    meta:
        description = "Bash /dev/tcp reverse shell with an interactive shell attached"
        severity = "critical"
        attack = "T1059.004"
        fp = "scripts that probe ports with /dev/tcp (no interactive shell)"
    strings:
        $tcp = /\/dev\/(tcp|udp)\/[0-9a-zA-Z._-]+\/[0-9]{1,5}/
        $sh1 = /(ba|z|da)?sh -i/
        $sh2 = "0>&1"
        $sh3 = ">&/dev/tcp/"
    condition:
        $tcp and any of ($sh*)
}

rule reverse_shell_one_liners : shell
{
    meta:
        description = "Reverse shell one-liners: nc -e, mkfifo with nc, socat exec, interpreters"
        severity = "critical"
        attack = "T1059"
        fp = "security training material"
    strings:
        $nc_e = /\bnc(at)?(\.traditional)? [^\n]{0,64}-e \/bin\/(ba)?sh/
        $fifo = /mkfifo [^\n]{1,64}\|\s*\/bin\/(ba)?sh -i[^\n]{0,64}\|\s*nc /
        $socat = /socat [^\n]{0,64}exec:['"]?(\/bin\/)?(ba)?sh/ nocase
        $py = /socket\.socket\([^\n]{0,200}(pty\.spawn|subprocess\.call\(\[?['"]\/bin\/(ba)?sh)/
        $perl = /perl -e [^\n]{0,120}Socket[^\n]{0,200}exec\(['"]\/bin\/(ba)?sh/
    condition:
        any of them
}

rule bind_shell : shell
{
    meta:
        description = "A bind shell: a listener that hands a shell to whoever connects"
        severity = "critical"
        attack = "T1059"
        fp = "debugging helpers in development images"
    strings:
        $nc_l = /\bnc(at)? [^\n]{0,32}-l[vnp ]*[^\n]{0,32}-e \/bin\/(ba)?sh/
        $socat = /socat [^\n]{0,32}TCP(4|6)?-LISTEN:[0-9]+[^\n]{0,64}EXEC:['"]?(\/bin\/)?(ba)?sh/ nocase
        $c1 = "bind(" ascii
        $c2 = "listen(" ascii
        $c3 = "dup2(" ascii
        $c4 = "/bin/sh" ascii
        $c5 = "execve" ascii
    condition:
        $nc_l or $socat or all of ($c*)
}
