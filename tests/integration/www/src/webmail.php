<?php
/* SquirrelMail's frame page after a successful login. */
require __DIR__ . '/../_runlog.php';
mg_runlog();
echo "<html><head><title>Example Org - Webmail</title></head><body>webmail</body></html>\n";
