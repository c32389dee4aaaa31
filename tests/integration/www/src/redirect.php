<?php
/*
 * SquirrelMail 1.4 src/redirect.php stand-in.
 *   right password -> header("Location: webmail.php") (303 for an HTTP/1.1
 *                     POST under mod_php, 302 for HTTP/1.0)
 *   anything else  -> logout_error(): an error page with status 200
 * The accepted password is "right".
 */
require __DIR__ . '/../_runlog.php';
mg_runlog();

$user = isset($_POST['login_username']) ? (string)$_POST['login_username'] : '';
$pass = isset($_POST['secretkey']) ? (string)$_POST['secretkey'] : '';

if ($user !== '' && $pass === 'right') {
    header("Location: webmail.php");
    exit;
}

$title = 'Example Org - Unknown user or password incorrect.';
echo "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\">\n"
    . "<html><head><title>" . mg_h($title) . "</title></head>\n"
    . "<body><!-- logout_error -->\n"
    . "<center><b>Unknown user or password incorrect.</b><br>\n"
    . "<a href=\"../src/login.php\" target=\"_top\">Go to the login page</a></center>\n"
    . "</body></html>\n";
