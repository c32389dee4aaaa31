<?php
/*
 * A webmail with its own conventions, for MailGuardFailure rules:
 *   POST, wrong password -> 422 and an error page
 *   POST, right password -> Location inbox.php (302/303)
 *   GET                  -> the form, 200
 * The accepted password is "right".
 */
require __DIR__ . '/../_runlog.php';
mg_runlog();

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $pass = isset($_POST['pass']) ? (string)$_POST['pass'] : '';
    if ($pass === 'right') {
        header('Location: inbox.php');
        exit;
    }
    http_response_code(422);
    echo "<html><body>Wrong user name or password.</body></html>\n";
    exit;
}
if (isset($_GET['status'])) {
    /* A GET answered with the failure status: a rule limited to POST must ignore it. */
    http_response_code(422);
}
echo "<html><body><form method=\"post\"><input name=\"user\"><input name=\"pass\" type=\"password\"></form></body></html>\n";
