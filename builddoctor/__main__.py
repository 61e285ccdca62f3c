from builddoctor.cli import main

main()
