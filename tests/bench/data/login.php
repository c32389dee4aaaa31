<?php
/* A trivial stand-in for a webmail login page, Roundcube-shaped: a GET
 * shows the form; a failed login POST (?_task=login) answers
 * "HTTP/1.0 401 Unauthorized" like Roundcube 1.4.1+, a POST with the
 * password "right" redirects like a successful login.  The real page
 * costs far more: this is the cheapest PHP a login can be. */
if ($_SERVER['REQUEST_METHOD'] === 'POST' && ($_GET['_task'] ?? '') === 'login') {
    if (($_POST['_pass'] ?? '') === 'right') {
        header('Location: ./?_task=mail');
        exit;
    }
    header('HTTP/1.0 401 Unauthorized');
    echo "<p>Login failed.</p>\n";
    exit;
}
?>
<!doctype html><title>Webmail login</title>
<form method="post" action="./login.php?_task=login">
<input name="_user"><input name="_pass" type="password"><button>Login</button>
</form>
