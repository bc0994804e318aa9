; Switchboard's Windows installer (Inno Setup 6). A placeholder: the signed installer,
; silent install for IT and the machine policy file are the work of a later issue.
#define AppName "Switchboard"
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppName={#AppName}
AppVersion={#AppVersion}
DefaultDirName={autopf}\{#AppName}
OutputBaseFilename=SwitchboardSetup-{#AppVersion}
