<?php
/*
 * Roundcube 1.6 stand-in: only the responses that matter to mod_mailguard.
 *   POST ./?_task=login  wrong password -> HTTP/1.0 401 Unauthorized + login page
 *                        right password -> Location ./?_task=mail (302, or 303
 *                        for an HTTP/1.1 POST: PHP decides, as with Roundcube)
 *   POST to any other task without a session -> 401, as Roundcube answers a
 *                        login posted with _task=login in the body but no
 *                        token (its login branch: counted, see mg_classify.c)
 *   GET                  the login form, 200; with _err=401 the form with 401,
 *                        like Roundcube 1.4.0 did on every login-page render
 * The accepted password is "right".
 */
require __DIR__ . '/_runlog.php';
mg_runlog();

function login_page($message)
{
    echo "<!DOCTYPE html>\n<html><head><title>Roundcube Webmail :: Welcome</title></head><body>\n";
    if ($message !== '') {
        echo '<div id="messagestack" class="error">' . mg_h($message) . "</div>\n";
    }
    echo '<form name="login-form" method="post" action="./?_task=login">' . "\n"
        . '<input type="hidden" name="_token" value="t0k3n">' . "\n"
        . '<input type="hidden" name="_task" value="login">' . "\n"
        . '<input type="hidden" name="_action" value="login">' . "\n"
        . '<input name="_user" id="rcmloginuser"> <input name="_pass" type="password">' . "\n"
        . "<button type=\"submit\">Login</button></form>\n</body></html>\n";
}

$task = isset($_GET['_task']) ? (string)$_GET['_task'] : '';
$method = $_SERVER['REQUEST_METHOD'];

if ($method === 'POST' && $task === 'login') {
    $user = isset($_POST['_user']) ? (string)$_POST['_user'] : '';
    $pass = isset($_POST['_pass']) ? (string)$_POST['_pass'] : '';
    if ($user !== '' && $pass === 'right') {
        header('Location: ./?_task=mail&_token=t0k3n');
        exit;
    }
    header('HTTP/1.0 401 Unauthorized');
    login_page('Login failed.');
    exit;
}

if ($method === 'POST') {
    header('HTTP/1.0 401 Unauthorized');
    login_page('Invalid request! No data was saved.');
    exit;
}

if ($task === 'mail') {
    echo "<!DOCTYPE html>\n<html><head><title>Roundcube Webmail :: Inbox</title></head>"
        . "<body>Inbox</body></html>\n";
    exit;
}

if (isset($_GET['_err']) && $_GET['_err'] === '401') {
    header('HTTP/1.0 401 Unauthorized');
}
login_page('');
