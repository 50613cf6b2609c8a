-- One database per node of deploy/docker-compose.yml (run once, when the volume is new).
CREATE DATABASE modelyard_a;
CREATE DATABASE modelyard_b;
CREATE DATABASE modelyard_c;
