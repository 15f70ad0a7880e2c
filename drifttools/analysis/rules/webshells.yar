// Webshells: server-side scripts that run what a request sends them.
// False positives: admin panels and CMS plugins that legitimately call eval.

rule php_webshell : webshell
{
    meta:
        description = "PHP that executes or evaluates request input"
        severity = "critical"
        attack = "T1505.003"
        fp = "framework code that evaluates trusted templates"
    strings:
        $php = "<?php" nocase
        $exec = /(system|shell_exec|passthru|exec|popen|proc_open|assert|eval)\s*\(\s*(base64_decode\s*\()?\s*\$_(GET|POST|REQUEST|COOKIE|SERVER)/ nocase
        $backtick = /`\s*\$_(GET|POST|REQUEST)\[/
    condition:
        $php and ($exec or $backtick)
}

rule jsp_webshell : webshell
{
    meta:
        description = "JSP that runs a request parameter through Runtime.exec"
        severity = "critical"
        attack = "T1505.003"
        fp = "rare: administration consoles"
    strings:
        $exec = "Runtime.getRuntime().exec(" ascii
        $param = "request.getParameter(" ascii
    condition:
        $exec and $param
}
