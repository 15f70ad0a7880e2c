rule t1 { strings: $a = "hello" condition: $a and filename == "x" }
