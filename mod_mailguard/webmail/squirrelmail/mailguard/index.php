<?php
/* Nothing to browse here. */
header('Location: ../index.php');
