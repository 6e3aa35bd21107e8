module big

go 1.19
