from distil.cli import main

main()
