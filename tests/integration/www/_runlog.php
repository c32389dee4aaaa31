<?php
/*
 * Shared by the stand-in pages: append one line per execution to the file
 * named by the MG_PHP_LOG environment variable (SetEnv), so a test can prove
 * that a denied request never reached PHP.  Without the variable (the demo)
 * nothing is written.
 */
function mg_runlog()
{
    $log = isset($_SERVER['MG_PHP_LOG']) ? $_SERVER['MG_PHP_LOG'] : '';
    if ($log === '') {
        return;
    }
    $line = sprintf("%s %s %s\n", $_SERVER['REMOTE_ADDR'],
                    $_SERVER['REQUEST_METHOD'], $_SERVER['REQUEST_URI']);
    file_put_contents($log, $line, FILE_APPEND | LOCK_EX);
}

function mg_h($s)
{
    return htmlspecialchars($s, ENT_QUOTES, 'UTF-8');
}
